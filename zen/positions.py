"""Telling a Transformer where each token is.

Attention is blind to order (permuting the keys permutes nothing in the output), so positions
enter from outside. Three ways, all with ``p`` the position and ``d`` the width::

    sinusoidal (Vaswani et al.)  PE[p, 2i] = sin(p / base^(2i/d)),
                                 PE[p, 2i+1] = cos(p / base^(2i/d))
    learned    (BERT, GPT-2)     PE[p] = weight[p],  weight (max_len, d)
    rotary     (RoPE, Su et al.) a pair of features at position p rotated by p · base^(-2i/d)

The first two are *added* to the token embeddings::

    x (B, L, d) ──+ PE[offset : offset + L] (L, d) ──→ (B, L, d)

RoPE instead rotates queries and keys inside attention, ``(..., L, d_head) → (..., L, d_head)``,
so that ``⟨R_p q, R_s k⟩`` depends only on ``p − s``. ``offset`` is the number of positions
already cached when decoding one token at a time. Two layouts of the pairs are in use::

    interleaved (the paper, Meta's Llama code)   pairs (x_0, x_1), (x_2, x_3), …
    half-split  (GPT-NeoX, Hugging Face)          pairs (x_0, x_{d/2}), (x_1, x_{d/2+1}), …

They are the same rotation in two orders of the features: :func:`interleaved_to_half` moves
the features (or a projection's output rows) from the first order to the second.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from zen import validate

__all__ = [
    "sinusoidal_positions",
    "SinusoidalPositionalEncoding",
    "LearnedPositionalEmbedding",
    "RotaryEmbedding",
    "interleaved_to_half",
    "half_to_interleaved",
]


def sinusoidal_positions(n_positions: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The paper's table ``(n_positions, d_model)``, computed in float64 and returned as float32."""
    validate.positive_int(n_positions, "n_positions")
    validate.positive_int(d_model, "d_model")
    if d_model % 2:
        raise ValueError(f"d_model must be even for sinusoidal positions, got {d_model}")
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]  # (n, 1)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d/2,)
    angles = pos * inv_freq  # (n, d/2)
    pe = torch.empty(n_positions, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angles.sin(), angles.cos()
    return pe.float()


def _check_positions(x: torch.Tensor, offset: int, max_len: int, d_model: int) -> None:
    validate.ndim(x, 3, "x", "(batch, L, d_model)")
    validate.features(x, d_model, "x")
    if offset + x.shape[1] > max_len:
        raise ValueError(
            f"positions up to {offset + x.shape[1]} requested but max_len is {max_len}"
        )


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sinusoidal positions: ``x (B, L, d_model) → x + PE[offset : offset + L]``."""

    def __init__(self, d_model: int, max_len: int = 4096, base: float = 10000.0) -> None:
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", sinusoidal_positions(max_len, d_model, base), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_positions(x, offset, self.max_len, self.d_model)
        return x + self.pe[offset : offset + x.shape[1]].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned vector per position: ``x + weight[offset : offset + L]``.

    ``weight`` has shape ``(max_len, d_model)``.
    """

    def __init__(self, max_len: int, d_model: int, init_std: float = 0.02) -> None:
        super().__init__()
        validate.positive_int(max_len, "max_len")
        validate.positive_int(d_model, "d_model")
        self.d_model, self.max_len = d_model, max_len
        self.weight = nn.Parameter(torch.randn(max_len, d_model) * init_std)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_positions(x, offset, self.max_len, self.d_model)
        return x + self.weight[offset : offset + x.shape[1]]


def interleaved_to_half(x: torch.Tensor) -> torch.Tensor:
    """Reorder the last dim from interleaved pairs to half-split pairs: ``(..., d) → (..., d)``.

    Feature ``2i + j`` (pair ``i``, member ``j``) moves to ``j · d/2 + i``, so
    ``rope_half(interleaved_to_half(x)) == interleaved_to_half(rope_interleaved(x))``. Applied to
    the rows of a head's query and key projections (``W.T`` per head), it converts a checkpoint
    from one layout to the other without changing a single attention score.
    """
    validate.ndim_at_least(x, 1, "x", "(..., d)")
    if x.shape[-1] % 2:
        raise ValueError(f"the last dim must be even to hold pairs, got {x.shape[-1]}")
    return rearrange(x, "... (i two) -> ... (two i)", two=2)  # (..., d/2 · 2) -> (..., 2 · d/2)


def half_to_interleaved(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`interleaved_to_half`: ``(..., d) → (..., d)``."""
    validate.ndim_at_least(x, 1, "x", "(..., d)")
    if x.shape[-1] % 2:
        raise ValueError(f"the last dim must be even to hold pairs, got {x.shape[-1]}")
    return rearrange(x, "... (two i) -> ... (i two)", two=2)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoPE) for queries/keys ``(..., L, d_head)``; no parameters.

    Pair ``i`` is rotated by ``p · base^(-2i/d)`` at position ``p``. The pairs are
    ``(x_i, x_{i + d/2})`` (the "rotate-half" layout of GPT-NeoX and Hugging Face), or
    ``(x_{2i}, x_{2i+1})`` with ``interleaved=True`` (the paper's and Meta's layout).
    With ``max_len`` the cosines and sines of positions ``0 … max_len − 1`` are tabulated once
    (a model's layers share one table); positions beyond it are computed on the fly.
    """

    def __init__(
        self,
        d_head: int,
        base: float = 10000.0,
        interleaved: bool = False,
        max_len: int | None = None,
    ) -> None:
        super().__init__()
        validate.positive_int(d_head, "d_head")
        if d_head % 2:
            raise ValueError(f"d_head must be even for RoPE, got {d_head}")
        self.d_head, self.base, self.interleaved = d_head, base, interleaved
        inv_freq = base ** (-torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)  # (d/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.max_len = 0 if max_len is None else validate.positive_int(max_len, "max_len")
        cos, sin = self._cos_sin(torch.arange(self.max_len, dtype=torch.float32))  # (max_len, d)
        self.register_buffer("cos_table", cos, persistent=False)
        self.register_buffer("sin_table", sin, persistent=False)

    def _cos_sin(self, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos`` and ``sin`` ``(L, d_head)`` of the angles at float32 positions ``pos (L,)``."""
        angles = torch.outer(pos, self.inv_freq.to(pos.device))  # (L, d/2)
        return angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)  # (L, d): both halves

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        validate.ndim_at_least(x, 2, "x", "(..., L, d_head)")
        validate.features(x, self.d_head, "x")
        if self.interleaved:  # the same rotation, in the other order of the features
            return half_to_interleaved(self._rotate(interleaved_to_half(x), offset))
        return self._rotate(x, offset)

    def _rotate(self, x: torch.Tensor, offset: int) -> torch.Tensor:
        """The half-split rotation: ``(..., L, d_head) → (..., L, d_head)``."""
        L = x.shape[-2]
        if offset + L <= self.max_len:  # from the table
            cos, sin = self.cos_table[offset : offset + L], self.sin_table[offset : offset + L]
        else:
            pos = torch.arange(offset, offset + L, device=x.device, dtype=torch.float32)
            cos, sin = self._cos_sin(pos)  # (L, d)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)  # two halves (..., L, d/2)
        rotated = torch.cat([-x2, x1], dim=-1)  # rotate_half: (x1, x2) -> (-x2, x1)
        return x * cos + rotated * sin

    def extra_repr(self) -> str:
        return (
            f"d_head={self.d_head}, base={self.base}, interleaved={self.interleaved}, "
            f"max_len={self.max_len}"
        )
