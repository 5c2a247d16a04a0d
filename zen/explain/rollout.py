"""Attention rollout: compose a transformer's attention maps over its layers."""

from __future__ import annotations

import torch

from zen import validate


# ------------------------------------------------------------------------------ attention
def attention_rollout(maps: torch.Tensor, residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) from ``maps`` ``(n_layers, B, n_heads, L, L)``.

    Each layer's heads are averaged; with ``residual`` the skip connection is added as
    ``½A + ½I`` (rows renormalised); the layers compose as ``R = Â_L ⋯ Â_1``. Returns ``(B, L,
    L)``: row ``q`` is how much each input token reaches position ``q`` at the top (rows sum to 1).
    """
    validate.ndim(maps, 5, "maps", "(n_layers, batch, n_heads, L, L)")
    validate.floating(maps, "maps")
    if maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"attention maps must be square (L, L), got {tuple(maps.shape[-2:])}")
    a = maps.mean(2)  # (n_layers, B, L, L)
    if residual:
        a = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        a = a / a.sum(-1, keepdim=True)
    rollout = a[0]
    for layer in a[1:]:
        rollout = layer @ rollout  # (B, L, L): later layers act on the left
    return rollout
