"""Round-to-nearest (RTN) weight quantization per tensor, per channel or per group.

A weight matrix ``W (out, in)`` is stored as ``b``-bit integers and symmetric scales::

    per tensor   one scale                       s = max|W| / (2^(b−1) − 1)
    per channel  one scale per output row        s_o = max_k |W[o, k]| / (2^(b−1) − 1)
    per group    one per row and group of g      s_{o,j} over W[o, j·g:(j+1)·g]
    q = clamp(round(W / s), −(2^(b−1)−1), 2^(b−1)−1)        Ŵ = q · s,   |W − Ŵ| ≤ s/2

Size in bits: ``b · out · in`` for the integers plus ``16 · n_scales`` for fp16 scales.
For ``b ≤ 4`` two codes share a byte (:func:`zen.compress.nf4.pack_4bit`, offset by ``2^(b−1)``
so they are non-negative).
"""

from __future__ import annotations

import torch
from einops import rearrange

from zen import validate
from zen.compress.nf4 import pack_4bit, unpack_4bit


def check_bits(bits: int) -> int:
    """``bits`` must be an integer in [2, 8]."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an integer in [2, 8], got {bits!r}")
    return bits


def group_scales(w: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """Symmetric scales for ``w (out, in)``: ``(1, 1)`` per tensor (``group_size=0``),
    ``(out, 1)`` per channel (``group_size=None``) or ``(out, in / group_size)`` per group."""
    validate.floating(w, "w")
    validate.ndim(w, 2, "w", "(out, in)")
    qmax = 2 ** (check_bits(bits) - 1) - 1
    a = w.detach().float().abs()
    if group_size == 0:
        m = a.amax().reshape(1, 1)
    elif group_size is None:
        m = a.amax(dim=1, keepdim=True)
    else:
        validate.positive_int(group_size, "group_size")
        if w.shape[1] % group_size:
            raise ValueError(
                f"group_size must divide the {w.shape[1]} input columns of w, got {group_size}"
            )
        m = rearrange(a, "o (n g) -> o n g", g=group_size).amax(dim=-1)  # (out, n_groups)
    return torch.where(m > 0, m / qmax, torch.ones_like(m))


def expand_scales(scale: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Scales ``(out, n_groups)`` repeated to the weight's ``(out, in)``."""
    return scale.repeat_interleave(shape[1] // scale.shape[1], dim=1).expand(shape)


def rtn_quantize(
    w: torch.Tensor, bits: int, group_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(q, scale)``: int8 codes ``(out, in)`` and scales (see :func:`group_scales`)."""
    scale = group_scales(w, bits, group_size)
    qmax = 2 ** (bits - 1) - 1
    q = torch.round(w.detach().float() / expand_scales(scale, w.shape)).clamp(-qmax, qmax)
    return q.to(torch.int8), scale


def rtn_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``q · scale`` as float32 ``(out, in)``."""
    return q.float() * expand_scales(scale, q.shape)


def fake_rtn(w: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """``dequantize(quantize(w))``: the weight the quantized model computes with."""
    return rtn_dequantize(*rtn_quantize(w, bits, group_size)).to(w.dtype)


def pack_codes(q: torch.Tensor, bits: int) -> torch.Tensor:
    """Signed codes of ``bits ≤ 4`` → uint8, two per byte (offset by ``2^(bits−1)``)."""
    if check_bits(bits) > 4:
        raise ValueError(f"packing two codes per byte needs bits <= 4, got {bits}")
    return pack_4bit(q.to(torch.int16) + 2 ** (bits - 1))


def unpack_codes(packed: torch.Tensor, bits: int, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: int8 codes of ``shape``."""
    return (unpack_4bit(packed).to(torch.int16) - 2 ** (bits - 1)).to(torch.int8).reshape(shape)


def quantized_bytes(
    numel: int, bits: int, n_scales: int, scale_bytes: int = 2, packed: bool = True
) -> float:
    """Bytes for ``numel`` codes of ``bits`` bits plus ``n_scales`` scales.

    ``packed=False`` stores one code per byte (int8 container).
    """
    code_bits = bits if packed else 8 * ((bits + 7) // 8)
    return numel * code_bits / 8 + n_scales * scale_bytes
