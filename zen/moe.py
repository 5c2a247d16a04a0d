"""A sparse mixture-of-experts feed-forward layer: route, dispatch, compute, combine.

Each token ``x`` (``d_model`` features) is scored by a linear router, and only the ``k`` best
of ``n_experts`` feed-forward networks (SwiGLU MLPs) run on it::

    p = softmax(W_r x)                       (n_experts,)   in fp32, whatever the input dtype
    S = top-k indices of p,  w_i = p_i / Σ_{j∈S} p_j        (k,)  renormalised gate weights
    y = Σ_{i∈S} w_i · E_i(x),  E_i(x) = W_down,i (silu(W_gate,i x) ⊙ W_up,i x)

Dispatch is sort-based: the ``N·k`` (token, slot) assignments are ordered by expert with a
stable sort (first choices before second choices, then token order), so each expert reads one
contiguous slice; an expert holds at most ``capacity = ceil(capacity_factor · N·k / n_experts)``
assignments and the rest are *dropped* (their slot contributes zero; the residual stream
carries the token past the layer)::

    x (N, d) ──router──▶ experts (N, k), weights (N, k)
          └─gather in expert order──▶ (kept, d) ──E_0 | E_1 | … (slices)──▶ (kept, d)
                                         ──× weight, index_add by token──▶ y (N, d)

Auxiliary losses: the load-balancing loss of Switch/GShard,
``n_experts · Σ_i f_i P_i`` (``f_i`` the fraction of assignments routed to expert ``i``,
``P_i`` its mean router probability), and the router z-loss of ST-MoE,
``mean(logsumexp(logits)²)``. :class:`ExpertParallelMoE` shards the experts over the ranks of
a process group and moves tokens to them with ``all_to_all``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import einops
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zen import validate

__all__ = [
    "route",
    "capacity",
    "dispatch",
    "combine",
    "load_balancing_loss",
    "z_loss",
    "Routing",
    "MoE",
    "ExpertParallelMoE",
]


def route(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` routing. ``logits`` ``(N, n_experts)`` → ``(weights, experts, probs)``.

    ``probs`` ``(N, n_experts)`` is the softmax in fp32; ``experts`` ``(N, k)`` the indices of
    the ``k`` largest (best first); ``weights`` ``(N, k)`` their probabilities renormalised to
    sum to one per token (fp32).
    """
    validate.ndim(logits, 2, "logits", "(tokens, n_experts)")
    validate.floating(logits, "logits")
    validate.positive_int(k, "k")
    if k > logits.shape[1]:
        raise ValueError(f"k must be at most n_experts={logits.shape[1]}, got k={k}")
    probs = torch.softmax(logits.float(), dim=-1)  # (N, E) fp32: bf16 ties would flip choices
    top, experts = torch.topk(probs, k, dim=-1)  # (N, k)
    return top / top.sum(-1, keepdim=True), experts, probs


def capacity(n_tokens: int, n_experts: int, k: int, capacity_factor: float) -> int:
    """Assignments one expert may take: ``ceil(capacity_factor · n_tokens · k / n_experts)``."""
    validate.positive(capacity_factor, "capacity_factor")
    return math.ceil(capacity_factor * n_tokens * k / n_experts)


@dataclass
class Routing:
    """One forward pass's routing, for the auxiliary losses and the statistics.

    ``logits``, ``probs`` ``(N, n_experts)``; ``experts``, ``weights`` ``(N, k)``;
    ``order`` ``(kept,)`` the kept assignments (index ``slot·N + token``) in expert order;
    ``counts`` ``(n_experts,)`` assignments routed to each expert, ``kept_counts`` those it
    computed; ``dropped`` the number of assignments over capacity.
    """

    logits: torch.Tensor
    probs: torch.Tensor
    experts: torch.Tensor
    weights: torch.Tensor
    order: torch.Tensor
    counts: torch.Tensor
    kept_counts: torch.Tensor
    dropped: int

    @property
    def drop_rate(self) -> float:
        """Fraction of the ``N·k`` assignments that were dropped."""
        return self.dropped / self.experts.numel()


def dispatch(
    experts: torch.Tensor, n_experts: int, capacity: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sort-based dispatch. ``experts`` ``(N, k)`` → ``(order, counts, kept_counts)``.

    Assignment ``a = slot·N + token`` (first choices first). ``order`` ``(kept,)`` lists the
    kept assignments grouped by expert (a stable sort keeps token order within an expert);
    ``counts`` ``(n_experts,)`` how many were routed to each expert; ``kept_counts`` how many
    each keeps (``min(count, capacity)``; all of them when ``capacity`` is ``None``).
    """
    validate.ndim(experts, 2, "experts", "(tokens, k)")
    if experts.dtype != torch.int64:
        raise TypeError(f"experts must hold int64 expert indices, got {experts.dtype}")
    flat = einops.rearrange(experts, "n k -> (k n)")  # (k·N,) slot-major
    order = torch.argsort(flat, stable=True)  # (k·N,) grouped by expert
    counts = torch.bincount(flat, minlength=n_experts)  # (E,)
    if capacity is None:
        return order, counts, counts
    starts = counts.cumsum(0) - counts  # (E,) where each expert's slice begins
    rank_in_expert = torch.arange(flat.numel(), device=flat.device) - starts[flat[order]]
    return order[rank_in_expert < capacity], counts, counts.clamp(max=capacity)


def combine(expert_out: torch.Tensor, order: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Scatter expert outputs back. ``expert_out`` ``(kept, d)`` in ``order`` → ``(N, d)``.

    Each row is scaled by its gate weight (``weights`` ``(N, k)``) and added to its token;
    a token's dropped slots add nothing.
    """
    n = weights.shape[0]
    w = einops.rearrange(weights, "n k -> (k n)")[order]  # (kept,)
    y = expert_out.new_zeros(n, expert_out.shape[-1])  # (N, d)
    return y.index_add(0, order % n, expert_out * w[:, None].to(expert_out.dtype))


def load_balancing_loss(
    probs: torch.Tensor, experts: torch.Tensor, normalize: str = "assignments"
) -> torch.Tensor:
    """Switch/GShard balance loss ``n_experts · Σ_i f_i P_i`` (a scalar, fp32).

    ``probs`` ``(N, n_experts)`` router probabilities, ``experts`` ``(N, k)`` chosen indices.
    ``P_i`` is the mean probability of expert ``i``; ``f_i`` counts the assignments to ``i``
    (no gradient), divided by ``N·k`` with ``normalize="assignments"`` (the fractions sum to
    1; Switch's definition, 1 at perfect balance) or by ``N`` with ``normalize="tokens"``
    (they sum to ``k``; Hugging Face's Mixtral loss, ``k`` at perfect balance).
    """
    validate.ndim(probs, 2, "probs", "(tokens, n_experts)")
    validate.ndim(experts, 2, "experts", "(tokens, k)")
    validate.same_size(probs, experts, 0, "probs", "experts")
    validate.one_of(normalize, ("assignments", "tokens"), "normalize")
    n, n_experts = probs.shape
    counts = torch.bincount(experts.flatten(), minlength=n_experts).float()  # (E,)
    f = counts / (n * experts.shape[1] if normalize == "assignments" else n)
    return n_experts * (f * probs.float().mean(0)).sum()


def z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss ``mean_tokens(logsumexp(logits)²)``; ``logits`` ``(N, E)``."""
    validate.ndim(logits, 2, "logits", "(tokens, n_experts)")
    return torch.logsumexp(logits.float(), dim=-1).pow(2).mean()


def _swiglu(x: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """SwiGLU expert: ``x`` ``(n, d)``, ``w_gate_up`` ``(2·d_ff, d)``, ``w_down`` ``(d, d_ff)``."""
    gate, up = (x @ w_gate_up.T).chunk(2, dim=-1)  # (n, d_ff) each
    return (F.silu(gate) * up) @ w_down.T  # (n, d)


def _run_experts(
    xs: torch.Tensor, counts: list[int], w_gate_up: torch.Tensor, w_down: torch.Tensor
) -> torch.Tensor:
    """Expert ``e`` on the ``e``-th contiguous slice of ``xs`` ``(sum(counts), d)``."""
    parts = xs.split(counts)
    return torch.cat([_swiglu(p, w_gate_up[e], w_down[e]) for e, p in enumerate(parts)])


class MoE(nn.Module):
    """Sparse MoE feed-forward layer: ``(..., d_model)`` → ``(..., d_model)``.

    ``n_experts`` SwiGLU experts of width ``d_ff`` stored fused: ``w_gate_up``
    ``(n_experts, 2·d_ff, d_model)`` (gate rows first) and ``w_down``
    ``(n_experts, d_model, d_ff)``; a router ``(n_experts, d_model)`` without bias. Each token
    uses ``top_k`` experts; ``capacity_factor=None`` drops nothing.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        n_experts: int,
        top_k: int = 2,
        capacity_factor: float | None = None,
    ) -> None:
        super().__init__()
        for value, name in ((d_model, "d_model"), (d_ff, "d_ff"), (n_experts, "n_experts")):
            validate.positive_int(value, name)
        validate.positive_int(top_k, "top_k")
        if top_k > n_experts:
            raise ValueError(f"top_k must be at most n_experts={n_experts}, got top_k={top_k}")
        if capacity_factor is not None:
            validate.positive(capacity_factor, "capacity_factor")
        self.d_model, self.d_ff, self.n_experts = d_model, d_ff, n_experts
        self.top_k, self.capacity_factor = top_k, capacity_factor
        self.router = nn.Linear(d_model, n_experts, bias=False)
        self.w_gate_up = nn.Parameter(torch.randn(n_experts, 2 * d_ff, d_model) / d_model**0.5)
        self.w_down = nn.Parameter(torch.randn(n_experts, d_model, d_ff) / d_ff**0.5)

    def extra_repr(self) -> str:
        return (
            f"d_model={self.d_model}, d_ff={self.d_ff}, n_experts={self.n_experts}, "
            f"top_k={self.top_k}, capacity_factor={self.capacity_factor}"
        )

    def forward(
        self, x: torch.Tensor, return_routing: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, Routing]:
        """``x`` ``(..., d_model)`` → ``y`` of the same shape (and the :class:`Routing`)."""
        validate.floating(x, "x")
        validate.features(x, self.d_model, "x")
        tokens = x.reshape(-1, self.d_model)  # (N, d)
        n = tokens.shape[0]
        logits = self.router(tokens)  # (N, E)
        weights, experts, probs = route(logits, self.top_k)  # (N, k), (N, k), (N, E)
        cap = None
        if self.capacity_factor is not None:
            cap = capacity(n, self.n_experts, self.top_k, self.capacity_factor)
        order, counts, kept_counts = dispatch(experts, self.n_experts, cap)
        xs = tokens[order % n]  # (kept, d) grouped by expert
        out = _run_experts(xs, kept_counts.tolist(), self.w_gate_up, self.w_down)  # (kept, d)
        y = combine(out, order, weights).reshape(x.shape)
        if not return_routing:
            return y
        dropped = int(counts.sum() - kept_counts.sum())
        routing = Routing(logits, probs, experts, weights, order, counts, kept_counts, dropped)
        return y, routing

    def parameter_counts(self) -> dict[str, int]:
        """Parameters in total and those one token uses (router + ``top_k`` experts)."""
        router = self.router.weight.numel()
        expert = (self.w_gate_up.numel() + self.w_down.numel()) // self.n_experts
        return {
            "total": router + self.n_experts * expert,
            "active": router + self.top_k * expert,
        }

    @classmethod
    def from_hf(cls, block: nn.Module) -> MoE:
        """Copy a ``transformers`` ``MixtralSparseMoeBlock`` (fused expert weights)."""
        needed = ("gate", "experts", "top_k")
        if not all(hasattr(block, a) for a in needed) or not hasattr(block.experts, "down_proj"):
            raise TypeError(
                "from_hf expects a transformers MixtralSparseMoeBlock (gate, experts.gate_up_proj, "
                f"experts.down_proj), got {type(block).__name__}"
            )
        act = getattr(block.experts, "config", None)
        act = getattr(act, "hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise ValueError(f"zen's experts use SwiGLU (silu); the block's hidden_act is {act!r}")
        n_experts, two_d_ff, d_model = block.experts.gate_up_proj.shape
        moe = cls(d_model, two_d_ff // 2, n_experts, top_k=block.top_k)
        src = block.experts.gate_up_proj
        moe = moe.to(device=src.device, dtype=src.dtype)
        with torch.no_grad():
            moe.router.weight.copy_(block.gate.weight)
            moe.w_gate_up.copy_(block.experts.gate_up_proj)  # (E, 2·d_ff, d): [gate; up]
            moe.w_down.copy_(block.experts.down_proj)  # (E, d, d_ff)
        return moe


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
        out = _run_experts(xs[by_expert], recv.sum(0).tolist(), self.w_gate_up, self.w_down)
        out = out[torch.argsort(by_expert)]  # back to (source, expert) order
        out = _AllToAll.apply(out, recv_rows, send_rows)  # (k·N, d) in this rank's order
        return combine(out, order, weights).reshape(x.shape)
