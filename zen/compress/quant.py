"""Integer quantization from scratch: int8 (or fewer bits) weights and activations.

A real tensor ``x`` is stored as integers ``q`` with a ``scale`` (and a ``zero_point``)::

    q = clamp(round(x / scale) + zero_point, qmin, qmax)      x̂ = (q − zero_point) · scale

* **symmetric (absmax)**: ``scale = max|x| / (2^(b−1) − 1)``, ``zero_point = 0``,
  ``q ∈ [−127, 127]``;
* **asymmetric (zero-point)**: ``scale = (max − min) / (2^b − 1)``, ``zero_point`` chosen so
  that ``min ↦ −2^(b−1)``; the whole integer range covers ``[min, max]`` (better for
  one-sided data such as post-ReLU activations).

Scales are per tensor (``axis=None``) or per channel (``axis=0``: one per output row).
Inside the range the rounding error is at most ``scale / 2``.

Also here: :func:`int_matmul` (int8 × int8 → int32), :class:`Int8Linear` (weights int8
per-channel, activations quantized on the fly, integer matmul), :func:`fake_quant` with the
straight-through estimator and :class:`FakeQuantLinear` for quantization-aware training.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate

SCHEMES = ("symmetric", "asymmetric")


@dataclass
class QTensor:
    """Integers ``q`` (int8 for ≤ 8 bits) with ``scale``/``zero_point`` broadcastable to ``q``."""

    q: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    bits: int

    def dequantize(self) -> torch.Tensor:
        return dequantize(self)


def qrange(bits: int, scheme: str) -> tuple[int, int]:
    """Integer range ``(qmin, qmax)``.

    Symmetric is ``±(2^(b−1)−1)``, asymmetric ``[−2^(b−1), 2^(b−1)−1]``.
    """
    _check_bits_scheme(bits, scheme)
    half = 2 ** (bits - 1)
    return (-(half - 1), half - 1) if scheme == "symmetric" else (-half, half - 1)


def _check_bits_scheme(bits: int, scheme: str) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(
            f"bits must be an integer in [2, 8] (values are stored as int8), got {bits!r}"
        )
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def _check_input(x: torch.Tensor, axis: int | None) -> None:
    validate.floating(x, "x")
    if x.numel() == 0:
        raise ValueError(f"x must be non-empty, got shape {tuple(x.shape)}")
    if axis is not None and not -x.ndim <= axis < x.ndim:
        raise ValueError(
            f"axis must be None or in [{-x.ndim}, {x.ndim - 1}] for x of shape "
            f"{tuple(x.shape)}, got {axis}"
        )


def quant_params(
    x: torch.Tensor, bits: int = 8, scheme: str = "symmetric", axis: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, zero_point)`` for ``x``.

    Scalars, or keep-dim tensors reduced over all axes but ``axis``.
    """
    _check_input(x, axis)
    qmin, qmax = qrange(bits, scheme)
    x = x.detach().float()
    if axis is None:
        lo, hi = x.min(), x.max()
    else:
        dims = [d for d in range(x.ndim) if d != axis % x.ndim]
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    lo, hi = (
        lo.clamp(max=0.0),
        hi.clamp(min=0.0),
    )  # the range always contains 0 (exact zeros, padding)
    if scheme == "symmetric":
        scale = torch.maximum(-lo, hi) / qmax
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero channel
        return scale, torch.zeros_like(scale)
    scale = (hi - lo) / (qmax - qmin)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero_point = (qmin - torch.round(lo / scale)).clamp(qmin, qmax)
    return scale, zero_point


def quantize(
    x: torch.Tensor, bits: int = 8, scheme: str = "symmetric", axis: int | None = None
) -> QTensor:
    """Quantize ``x`` (any shape) to ``bits``-bit integers per tensor or per channel ``axis``."""
    scale, zero_point = quant_params(x, bits, scheme, axis)
    qmin, qmax = qrange(bits, scheme)
    q = (torch.round(x.detach().float() / scale) + zero_point).clamp(qmin, qmax).to(torch.int8)
    return QTensor(q, scale, zero_point, bits)


def dequantize(qt: QTensor) -> torch.Tensor:
    """``(q − zero_point) · scale`` as float32."""
    return (qt.q.float() - qt.zero_point) * qt.scale


def fake_quant(
    x: torch.Tensor, bits: int = 8, scheme: str = "symmetric", axis: int | None = None
) -> torch.Tensor:
    """``dequantize(quantize(x))`` in the forward pass, identity in the backward pass.

    The straight-through estimator (Bengio et al., 2013): ``round`` has zero gradient almost
    everywhere, so the backward pass pretends it was the identity,
    ``x + (x̂ − x).detach()``. Used for quantization-aware training.
    """
    x_hat = dequantize(quantize(x, bits, scheme, axis)).to(x.dtype)
    return x + (x_hat - x).detach()


def int_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact integer product of int8 matrices ``a (m, k)`` and ``b (k, n)`` as int32 ``(m, n)``.

    Every product fits in 16 bits and the sum of ``k`` of them in 32 bits for ``k < 2^17``.
    On CPU the matmul runs on int32; elsewhere in float64, exact for these magnitudes.
    """
    for t, name in ((a, "a"), (b, "b")):
        validate.ndim(t, 2, name, "(rows, cols)")
        if t.dtype != torch.int8:
            raise TypeError(f"{name} must be int8, got {t.dtype}")
        if t.numel() == 0:
            raise ValueError(f"{name} must be non-empty, got shape {tuple(t.shape)}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"inner dimensions must match: a is {tuple(a.shape)}, b is {tuple(b.shape)}"
        )
    if a.device.type == "cpu":
        return a.to(torch.int32) @ b.to(torch.int32)
    return (a.double() @ b.double()).to(torch.int32)


class Int8Linear(nn.Module):
    """A ``Linear`` run in integers: int8 weights (symmetric, per output channel) and int8
    activations (symmetric, per row, computed on the fly), one int32 matmul, one rescale.

    ``y[i, o] = sx[i] · sw[o] · Σ_k qx[i, k] · qw[o, k] + b[o]``.
    Input ``(..., in)``, output ``(..., out)``.
    """

    def __init__(
        self, qweight: torch.Tensor, wscale: torch.Tensor, bias: torch.Tensor | None, bits: int = 8
    ):
        super().__init__()
        self.register_buffer("qweight", qweight)  # (out, in) int8
        self.register_buffer("wscale", wscale.reshape(-1))  # (out,)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.bits = bits
        self.in_features, self.out_features = qweight.shape[1], qweight.shape[0]

    @classmethod
    def from_float(cls, linear: nn.Linear, bits: int = 8) -> Int8Linear:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be nn.Linear, got {type(linear).__name__}")
        qt = quantize(linear.weight, bits, "symmetric", axis=0)
        return cls(qt.q, qt.scale, linear.bias, bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"input must end in {self.in_features} features, got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (..., in) -> (rows, in)
        qx = quantize(x2, self.bits, "symmetric", axis=0)  # one scale per row: (rows, 1)
        acc = int_matmul(qx.q, self.qweight.T)  # (rows, out) int32
        y = acc.float() * qx.scale * self.wscale  # (rows, 1) * (out,) broadcast
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}"


class FakeQuantLinear(nn.Linear):
    """A ``Linear`` whose weights (per output channel) and inputs (per tensor) are fake-quantized
    in the forward pass; gradients flow straight through to the float weights (QAT)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        bits: int = 8,
        quantize_input: bool = True,
    ):
        super().__init__(in_features, out_features, bias)
        _check_bits_scheme(bits, "symmetric")
        self.bits, self.quantize_input = bits, quantize_input

    @classmethod
    def from_float(
        cls, linear: nn.Linear, bits: int = 8, quantize_input: bool = True
    ) -> FakeQuantLinear:
        m = cls(
            linear.in_features, linear.out_features, linear.bias is not None, bits, quantize_input
        )
        m.load_state_dict(linear.state_dict())
        return m.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = fake_quant(self.weight, self.bits, "symmetric", axis=0)
        if self.quantize_input:
            x = fake_quant(x, self.bits, "symmetric")
        return F.linear(x, w, self.bias)


def size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: the model's size on disk."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getbuffer().nbytes
