"""The sparse MoE layer: a router and ``n_experts`` SwiGLU experts stored fused."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate
from zen.moe.routing import Routing, capacity, combine, dispatch, route


def _swiglu(x: torch.Tensor, w_gate_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """SwiGLU expert: ``x`` ``(n, d)``, ``w_gate_up`` ``(2·d_ff, d)``, ``w_down`` ``(d, d_ff)``."""
    gate, up = (x @ w_gate_up.T).chunk(2, dim=-1)  # (n, d_ff) each
    return (F.silu(gate) * up) @ w_down.T  # (n, d)


def run_experts(
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
        out = run_experts(xs, kept_counts.tolist(), self.w_gate_up, self.w_down)  # (kept, d)
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
