"""Expert parallelism: the experts sharded over ranks, tokens moved with ``all_to_all``."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from zen import validate
from zen.moe.layer import MoE, run_experts
from zen.moe.routing import combine, dispatch, route


class _AllToAll(torch.autograd.Function):
    """``all_to_all_single`` with autograd: the backward pass sends the gradients back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, send: list[int], recv: list[int]) -> torch.Tensor:
        ctx.send, ctx.recv = send, recv
        out = x.new_empty(sum(recv), *x.shape[1:])
        dist.all_to_all_single(out, x.contiguous(), recv, send)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _AllToAll.apply(grad, ctx.recv, ctx.send), None, None


class ExpertParallelMoE(nn.Module):
    """One rank's part of a :class:`MoE` whose experts are sharded over the process group.

    Rank ``r`` of ``p`` holds experts ``[r·E/p, (r+1)·E/p)`` and a copy of the router; each
    rank routes its own tokens, sends every assignment to the rank owning its expert
    (``all_to_all``), computes, and receives the outputs back (a second ``all_to_all``).
    No capacity: nothing is dropped. The router's gradient is per rank (all-reduce it as in
    data parallelism); the experts' gradients are complete on their owner.
    """

    def __init__(self, moe: MoE, rank: int, world_size: int) -> None:
        super().__init__()
        validate.divisible(moe.n_experts, world_size, "n_experts", "world_size")
        if moe.capacity_factor is not None:
            raise ValueError(
                "ExpertParallelMoE drops nothing: build it from a MoE without capacity"
            )
        self.rank, self.world_size = rank, world_size
        self.n_experts, self.top_k, self.d_model = moe.n_experts, moe.top_k, moe.d_model
        self.local = moe.n_experts // world_size
        lo = rank * self.local
        self.router = nn.Linear(moe.d_model, moe.n_experts, bias=False)
        self.router.load_state_dict(moe.router.state_dict())
        self.w_gate_up = nn.Parameter(moe.w_gate_up.detach()[lo : lo + self.local].clone())
        self.w_down = nn.Parameter(moe.w_down.detach()[lo : lo + self.local].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(..., d_model)``, this rank's tokens → ``y`` of the same shape."""
        validate.features(x, self.d_model, "x")
        tokens = x.reshape(-1, self.d_model)  # (N, d)
        n = tokens.shape[0]
        weights, experts, _ = route(self.router(tokens), self.top_k)
        order, counts, _ = dispatch(experts, self.n_experts)  # order: grouped by expert
        send = counts.view(self.world_size, self.local)  # (p, local) per destination rank
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send)  # recv[s, e]: rank s sends e's assignments
        send_rows, recv_rows = send.sum(1).tolist(), recv.sum(1).tolist()
        xs = _AllToAll.apply(tokens[order % n], send_rows, recv_rows)  # (received, d)
        # received rows are grouped by source, then expert: regroup by local expert
        owner = torch.repeat_interleave(
            torch.arange(self.local).repeat(self.world_size), recv.flatten()
        )  # (received,) local expert of each row
        by_expert = torch.argsort(owner, stable=True)
        out = run_experts(xs[by_expert], recv.sum(0).tolist(), self.w_gate_up, self.w_down)
        out = out[torch.argsort(by_expert)]  # back to (source, expert) order
        out = _AllToAll.apply(out, recv_rows, send_rows)  # (k·N, d) in this rank's order
        return combine(out, order, weights).reshape(x.shape)
