"""Perturbation attributions: occlusion, exact Shapley values and kernel SHAP.

They need only forward passes: the model is evaluated on copies of ``x`` with some features
replaced by the baseline.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from zen import validate
from zen.explain.gradients import Model, _baseline, _check_input, output


# ------------------------------------------------------------------------------ perturbation
def occlusion(
    model: Model,
    x: torch.Tensor,
    window: Sequence[int],
    stride: Sequence[int] | int = 1,
    target: int | torch.Tensor | None = None,
    baseline: float = 0.0,
) -> torch.Tensor:
    """Occlusion: slide a ``window`` over the features, set it to ``baseline``, record the drop
    ``F(x) − F(x_occluded)``; each feature gets the mean drop over the windows that cover it.

    ``window`` and ``stride`` have one entry per feature axis; the last window along an axis is
    cut at the edge when the stride does not divide the room left.
    """
    _check_input(x)
    window = tuple(window)
    stride = (stride,) * len(window) if isinstance(stride, int) else tuple(stride)
    feat = tuple(x.shape[1:])
    if len(window) != len(feat) or len(stride) != len(feat):
        raise ValueError(
            f"window and stride need one entry per feature axis {feat}, "
            f"got window={window}, stride={stride}"
        )
    for w, s, n in zip(window, stride, feat):
        validate.positive_int(w, "window")
        validate.positive_int(s, "stride")
        if w > n:
            raise ValueError(f"window {window} does not fit the features {feat}")
    starts = [range(0, math.ceil((n - w) / s) * s + 1, s) for n, w, s in zip(feat, window, stride)]
    with torch.no_grad():
        full = output(model, x, target)  # (B,)
        total, count = torch.zeros_like(x), torch.zeros(feat, dtype=x.dtype, device=x.device)
        for corner in itertools.product(*starts):
            region = (slice(None),) + tuple(slice(c, c + w) for c, w in zip(corner, window))
            occluded = x.clone()
            occluded[region] = baseline
            drop = full - output(model, occluded, target)  # (B,)
            total[region] += drop.view((-1,) + (1,) * len(feat))
            count[region[1:]] += 1
    return total / count


def coalition_values(
    model: Model,
    x: torch.Tensor,
    coalitions: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    target: int | torch.Tensor | None = None,
    feature_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``v(S) = F(x on S, x' elsewhere)`` for each coalition row ``(K, M)`` of 0/1: ``(B, K)``."""
    x0 = _baseline(x, baseline)
    mask = _feature_mask(x, feature_mask)
    keep = coalitions.to(x.device, x.dtype)[:, mask]  # (K, *features): 1 where x is kept
    mixed = x0[:, None] + keep[None] * (x - x0)[:, None]  # (B, K, *features)
    tgt = (
        target.repeat_interleave(len(coalitions))
        if isinstance(target, torch.Tensor) and target.numel() > 1
        else target
    )
    with torch.no_grad():
        return output(model, mixed.flatten(0, 1), tgt).view(x.shape[0], len(coalitions))


def _feature_mask(x: torch.Tensor, feature_mask: torch.Tensor | None) -> torch.Tensor:
    """Group ids ``0..M−1`` per feature (default: every feature its own player)."""
    if feature_mask is None:
        return torch.arange(x[0].numel(), device=x.device).view(x.shape[1:])
    if feature_mask.shape != x.shape[1:] or feature_mask.is_floating_point():
        raise ValueError(
            f"feature_mask must be an integer tensor of one example's shape "
            f"{tuple(x.shape[1:])}, got {feature_mask.dtype} {tuple(feature_mask.shape)}"
        )
    ids = feature_mask.unique()
    if not torch.equal(ids.cpu(), torch.arange(len(ids))):
        raise ValueError(f"feature_mask must number its groups 0..M-1, got ids {ids.tolist()}")
    return feature_mask.to(x.device).long()


def _players(x: torch.Tensor, feature_mask: torch.Tensor | None, limit: int) -> int:
    m = int(_feature_mask(x, feature_mask).max()) + 1
    if m > limit:
        raise ValueError(
            f"{m} players need 2^{m} coalitions: group the features with feature_mask "
            f"(at most {limit} players)"
        )
    return m


def _spread(phi: torch.Tensor, x: torch.Tensor, feature_mask: torch.Tensor | None) -> torch.Tensor:
    """Per-player values ``(B, M)`` → the shape of x (each feature gets its group's value)."""
    mask = _feature_mask(x, feature_mask)
    return phi[:, mask] if feature_mask is not None else phi.view_as(x)


def shapley_values(
    model: Model,
    x: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    target: int | torch.Tensor | None = None,
    feature_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact Shapley values by enumerating all 2^M coalitions of the M players (M ≤ 16).

    Returns ``(B, M)``: player ``m`` is feature group ``m`` of ``feature_mask`` (default: every
    feature). They sum to ``F(x) − F(x')`` exactly.
    """
    _check_input(x)
    m = _players(x, feature_mask, 16)
    coalitions = torch.tensor(list(itertools.product((0, 1), repeat=m)), dtype=torch.float64)
    v = coalition_values(model, x, coalitions, baseline, target, feature_mask).double()  # (B, 2^M)
    index = {tuple(int(c) for c in row): k for k, row in enumerate(coalitions)}
    size = coalitions.sum(1).long()
    fact = [math.factorial(k) for k in range(m + 1)]
    phi = torch.zeros(x.shape[0], m, dtype=torch.float64, device=x.device)
    for k, row in enumerate(coalitions.long().tolist()):
        for i in range(m):
            if row[i] == 0:
                with_i = index[tuple(row[:i] + [1] + row[i + 1 :])]
                weight = fact[size[k]] * fact[m - size[k] - 1] / fact[m]
                phi[:, i] += weight * (v[:, with_i] - v[:, k])
    return phi.to(x.dtype)


def kernel_shap(
    model: Model,
    x: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    target: int | torch.Tensor | None = None,
    feature_mask: torch.Tensor | None = None,
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Kernel SHAP: the linear model g(z) = φ₀ + Σ φᵢ zᵢ fitted to v(z) with the Shapley kernel
    π(z) = (M−1) / (C(M,|z|)·|z|·(M−|z|)), under φ₀ = v(∅) and Σφ = v(all) − v(∅).

    ``n_samples=None`` enumerates the 2^M − 2 proper coalitions (then φ are the exact Shapley
    values); otherwise coalitions are drawn from π (sizes ∝ (M−1)/(|z|(M−|z|))) and weighted
    equally. Returns ``(B, M)``.
    """
    _check_input(x)
    m = _players(x, feature_mask, 30 if n_samples else 16)
    if m < 2:
        raise ValueError(f"kernel SHAP needs at least 2 players, got {m}")
    sizes = torch.arange(1, m, dtype=torch.float64)
    if n_samples is None:
        z = torch.tensor(
            [c for c in itertools.product((0, 1), repeat=m) if 0 < sum(c) < m], dtype=torch.float64
        )
        s = z.sum(1)
        pi = (m - 1) / (
            torch.tensor([math.comb(m, int(k)) for k in s], dtype=torch.float64) * s * (m - s)
        )
    else:
        n_samples = validate.positive_int(n_samples, "n_samples")
        p_size = (m - 1) / (sizes * (m - sizes))
        drawn = sizes[
            torch.multinomial(p_size / p_size.sum(), n_samples, True, generator=generator)
        ]
        order = torch.rand(n_samples, m, generator=generator).argsort(1)
        z = (order < drawn[:, None]).double()  # a uniform subset of each drawn size
        pi = torch.ones(n_samples, dtype=torch.float64)
    ends = torch.stack([torch.zeros(m), torch.ones(m)]).double()
    v_ends = coalition_values(model, x, ends, baseline, target, feature_mask).double()  # (B, 2)
    v = coalition_values(model, x, z, baseline, target, feature_mask).double().cpu()  # (B, K)
    v0, gap = v_ends[:, 0].cpu(), (v_ends[:, 1] - v_ends[:, 0]).cpu()
    # Eliminate φ_M = gap − Σ_{i<M} φ_i: v − v0 − z_M·gap = Σ_{i<M} φ_i (z_i − z_M)
    a = z[:, :-1] - z[:, -1:]  # (K, M−1)
    b = v - v0[:, None] - z[:, -1] * gap[:, None]  # (B, K)
    w = pi.sqrt()
    sol = torch.linalg.lstsq(
        (a * w[:, None])[None].expand(len(b), -1, -1), (b * w)[..., None]
    ).solution
    phi = torch.cat([sol[..., 0], gap[:, None] - sol[..., 0].sum(1, keepdim=True)], 1)  # (B, M)
    return phi.to(x.device, x.dtype)
