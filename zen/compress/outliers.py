"""Activation outliers and the two rescalings that tame them: SmoothQuant and AWQ.

A few input channels ``j`` of a linear layer carry activations far larger than the rest. For
any positive per-channel ``s``, ``(X / s)(W · s)ᵀ = X Wᵀ`` exactly (``W`` is ``(out, in)``,
``W · s`` scales its columns), so the difficulty can be moved between ``X`` and ``W``:

* **SmoothQuant** (Xiao et al., 2023), to quantize both: ``s_j = max|X_j|^α / max|W_j|^(1−α)``
  flattens the activation outliers into the weights (``α = 0.5`` balances them).
* **AWQ** (Lin et al., 2024), weight-only: ``s_j = mean|X_j|^α`` scales the *salient* weights
  (those that meet large activations) up before rounding, so their relative rounding error
  shrinks; the quantized layer computes ``(X / s) Q(W · s)ᵀ``. ``α`` is picked on a grid by the
  layer's output error on calibration data.
"""

from __future__ import annotations

import torch

from zen import validate
from zen.compress.rtn import fake_rtn


def channel_absmax(x: torch.Tensor) -> torch.Tensor:
    """``max |X_j|`` per input channel of calibration inputs ``x (..., in)`` → ``(in,)``."""
    validate.floating(x, "x")
    x = x.detach().reshape(-1, x.shape[-1])
    if x.shape[0] == 0:
        raise ValueError("calibration data is empty: need at least one input row")
    return x.abs().amax(dim=0)


def smoothquant_scales(
    x_absmax: torch.Tensor, w: torch.Tensor, alpha: float = 0.5, eps: float = 1e-5
) -> torch.Tensor:
    """Per-input-channel ``s (in,)``; use ``X / s`` and ``W · s`` (columns of ``W (out, in)``)."""
    validate.ndim(w, 2, "w", "(out, in)")
    validate.in_range(alpha, "alpha", 0.0, 1.0)
    if x_absmax.shape != (w.shape[1],):
        raise ValueError(f"x_absmax must have shape ({w.shape[1]},), got "
                         f"{tuple(x_absmax.shape)}")  # fmt: skip
    w_absmax = w.detach().abs().amax(dim=0)  # (in,)
    return (x_absmax.clamp_min(eps) ** alpha / w_absmax.clamp_min(eps) ** (1 - alpha)).float()


def awq_search(
    w: torch.Tensor,
    x: torch.Tensor,
    bits: int = 4,
    group_size: int | None = None,
    grid: int = 11,
) -> tuple[torch.Tensor, float]:
    """AWQ's scale search for ``w (out, in)`` on calibration inputs ``x (..., in)``.

    Tries ``s = mean|X_j|^α`` for ``α`` in ``linspace(0, 1, grid)`` (``α = 0`` is plain RTN) and
    returns the effective weight ``Q(W · s) / s`` with the lowest output error, and its ``α``.
    """
    validate.ndim(w, 2, "w", "(out, in)")
    x = x.detach().reshape(-1, x.shape[-1]).float()
    if x.shape[0] == 0:
        raise ValueError("calibration data is empty: need at least one input row")
    validate.features(x, w.shape[1], "x")
    mean_abs = x.abs().mean(dim=0).clamp_min(1e-8)  # (in,)
    y = x @ w.float().T
    best = (float("inf"), None, 0.0)
    for alpha in torch.linspace(0, 1, grid).tolist():
        s = mean_abs**alpha
        s = s / (s.max() * s.min()).sqrt()  # centre the scales around 1
        w_eff = fake_rtn(w.float() * s, bits, group_size) / s
        err = (x @ w_eff.T - y).pow(2).mean().item()
        if err < best[0]:
            best = (err, w_eff, alpha)
    return best[1].to(w.dtype), best[2]
