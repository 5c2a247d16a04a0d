"""Routing tokens to experts: top-k gates, capacity, sort-based dispatch, combine, aux losses."""

from __future__ import annotations

import math
from dataclasses import dataclass

import einops
import torch

from zen import validate


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
