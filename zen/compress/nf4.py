"""NF4, the 4-bit NormalFloat data type of QLoRA (Dettmers et al., 2023), from scratch.

Trained weights are close to normally distributed, so NF4 puts its 16 levels at quantiles of
the standard normal instead of on an even grid, rescaled to ``[−1, 1]``, with an exact zero.
Eight positive levels come from quantiles ``linspace(δ, ½, 9)`` and seven negative ones from
``linspace(δ, ½, 8)`` (``δ = ½(1/32 + 1/30)`` as in QLoRA's code), each side divided by its
largest magnitude::

    levels = sort({Φ⁻¹(p⁺)/max} ∪ {0} ∪ {−Φ⁻¹(p⁻)/max})          16 values, −1 … 0 … 1

A weight tensor is cut into blocks of ``block_size`` consecutive values (64 in QLoRA); each
block keeps its absolute maximum ``absmax`` (the scale) and every value is stored as the
4-bit index of the level nearest ``w / absmax``. Two indices share a byte::

    w (n,) → blocks (n/B, B) → codes (n/B, B) uint8 in [0, 15] → packed (n/2,) uint8
    ŵ = levels[codes] · absmax

Size: ``n/2`` bytes of codes plus one fp32 scale per block (``4/B`` bytes per value; QLoRA
quantizes the scales again — "double quantization" — which this module does not do).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange

from zen import validate


def nf4_levels(offset: float = 0.5 * (1 / 32 + 1 / 30)) -> torch.Tensor:
    """The 16 NF4 levels in ascending order, ``(16,)`` float32, from −1 to 1 with an exact 0."""
    if not 0.0 < offset < 0.5:
        raise ValueError(f"offset must lie in (0, 0.5), got {offset!r}")
    normal = torch.distributions.Normal(0.0, 1.0)
    hi = torch.linspace(1 - offset, 0.5, 9, dtype=torch.float64)[:-1]  # 8 positive quantiles
    lo = torch.linspace(1 - offset, 0.5, 8, dtype=torch.float64)[:-1]  # 7 negative quantiles
    pos, neg = normal.icdf(hi), -normal.icdf(lo)
    levels = torch.cat([pos / pos.max(), torch.zeros(1, dtype=torch.float64), neg / -neg.min()])
    return levels.sort().values.float()


@dataclass
class NF4Tensor:
    """A tensor stored as packed NF4 codes: two 4-bit indices per byte, one absmax per block."""

    packed: torch.Tensor  # (numel / 2,) uint8
    absmax: torch.Tensor  # (numel / block_size,) float32
    shape: torch.Size
    block_size: int

    def dequantize(self) -> torch.Tensor:
        return nf4_dequantize(self)

    def nbytes(self) -> int:
        """Bytes held: the packed codes plus the per-block scales."""
        return self.packed.numel() * self.packed.element_size() + self.absmax.numel() * 4


def pack_4bit(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte: ``(..., 2k)`` integers in [0, 15] → ``(2k / 2,)`` uint8 (flat).

    The first code of each pair goes in the high nibble.
    """
    if codes.numel() % 2:
        raise ValueError(f"packing needs an even number of codes, got {codes.numel()}")
    if codes.numel() and (codes.min() < 0 or codes.max() > 15):
        raise ValueError("codes must lie in [0, 15] to fit in 4 bits")
    pairs = rearrange(codes.reshape(-1).to(torch.uint8), "(n two) -> n two", two=2)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def unpack_4bit(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_4bit`: ``(n,)`` uint8 → ``(2n,)`` uint8 codes."""
    if packed.dtype != torch.uint8:
        raise TypeError(f"packed must be uint8, got {packed.dtype}")
    pairs = torch.stack([packed >> 4, packed & 0x0F], dim=-1)  # (n, 2)
    return rearrange(pairs, "n two -> (n two)")


def nf4_quantize(w: torch.Tensor, block_size: int = 64) -> NF4Tensor:
    """Quantize ``w`` (any shape, ``numel`` divisible by ``block_size``) to :class:`NF4Tensor`."""
    validate.floating(w, "w")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size must be an integer ≥ 2, got {block_size!r}")
    if block_size % 2 or w.numel() == 0 or w.numel() % block_size:
        raise ValueError(
            f"block_size must be even and divide w.numel(); got block_size={block_size} "
            f"for w of shape {tuple(w.shape)} ({w.numel()} values)"
        )
    blocks = rearrange(w.detach().float().reshape(-1), "(n b) -> n b", b=block_size)
    absmax = blocks.abs().amax(dim=1)  # (n,)
    normed = blocks / absmax.clamp_min(torch.finfo(torch.float32).tiny)[:, None]  # in [-1, 1]
    levels = nf4_levels().to(w.device)
    codes = (normed[..., None] - levels).abs().argmin(dim=-1)  # (n, b) nearest level
    return NF4Tensor(pack_4bit(codes), absmax, w.shape, block_size)


def nf4_dequantize(t: NF4Tensor) -> torch.Tensor:
    """Back to float32: ``levels[codes] · absmax``, in the original shape."""
    codes = unpack_4bit(t.packed).long()
    blocks = rearrange(nf4_levels().to(t.absmax.device)[codes], "(n b) -> n b", b=t.block_size)
    return (blocks * t.absmax[:, None]).reshape(t.shape)
