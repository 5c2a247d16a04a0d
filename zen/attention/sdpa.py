"""Scaled dot-product attention from scratch, with PyTorch's mask conventions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zen import validate


def causal_mask(
    L: int, S: int | None = None, offset: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """Boolean mask ``(L, S)``: query ``i`` (at position ``offset + i``) may attend to key ``j <=
    offset + i``.

    ``offset=0`` is PyTorch's ``is_causal`` (top-left aligned); ``offset = S - L`` aligns it
    bottom-right, as needed when ``L`` new queries follow ``S - L`` cached keys.
    """
    S = L if S is None else S
    validate.positive_int(L, "L")
    validate.positive_int(S, "S")
    return torch.ones(L, S, dtype=torch.bool, device=device).tril(diagonal=offset)


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        validate.ndim_at_least(t, 2, name, "(..., seq, features)")
        validate.floating(t, name)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same feature size E (last dim): got q {tuple(q.shape)} and k "
            f"{tuple(k.shape)}"
        )
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(
            f"k and v must have the same length S (dim -2): got k {tuple(k.shape)} and v "
            f"{tuple(v.shape)}"
        )
    try:
        torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"batch dims of q, k, v must broadcast: got q {tuple(q.shape)}, k {tuple(k.shape)}, v "
            f"{tuple(v.shape)}"
        ) from None


def check_mask(mask: torch.Tensor, scores_shape: torch.Size, dtype: torch.dtype) -> None:
    validate.tensor(mask, "attn_mask")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(
            f"attn_mask must be bool (True = attend) or float (added to scores), got {mask.dtype}"
        )
    try:
        ok = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"attn_mask of shape {tuple(mask.shape)} does not broadcast to the scores' shape "
            f"{tuple(scores_shape)} (..., L, S)"
        )


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q kᵀ · scale + mask) v`` — the readable twin of ``F.scaled_dot_product_attention``.

    Args:
        q: queries ``(..., L, E)``; k: keys ``(..., S, E)``; v: values ``(..., S, Ev)``.
        attn_mask: bool (``True`` = attend) or float (added), broadcastable to ``(..., L, S)``.
        is_causal: also mask keys ``j > i`` (top-left aligned, as PyTorch).
        dropout_p: probability of dropping an attention weight (applied whenever > 0).
        scale: multiplies the scores; default ``1/√E``.
        return_weights: also return the weights ``(..., L, S)`` before dropout.

    Returns:
        ``out (..., L, Ev)``, or ``(out, weights)`` when ``return_weights``.
    """
    _check_qkv(q, k, v)
    validate.in_range(dropout_p, "dropout_p", 0.0, 1.0)
    L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = 1.0 / math.sqrt(E) if scale is None else scale

    scores = (q @ k.transpose(-2, -1)) * scale  # (..., L, E) @ (..., E, S) -> (..., L, S)
    if attn_mask is not None:
        check_mask(attn_mask, scores.shape, q.dtype)
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        else:
            scores = scores + attn_mask
    if is_causal:
        scores = scores.masked_fill(~causal_mask(L, S, device=q.device), float("-inf"))

    # A query with every key masked would give softmax(-inf, ..., -inf) = NaN; like PyTorch we
    # give it zero weights instead (and zero gradients), so padded queries stay harmless.
    blocked = torch.isneginf(scores).all(dim=-1, keepdim=True)  # (..., L, 1)
    weights = torch.softmax(scores.masked_fill(blocked, 0.0), dim=-1).masked_fill(blocked, 0.0)
    used = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    out = used @ v  # (..., L, S) @ (..., S, Ev) -> (..., L, Ev)
    return (out, weights) if return_weights else out
