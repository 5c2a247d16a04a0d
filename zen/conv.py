"""Convolution as one matrix multiply (im2col), and pooling.

A 2-D convolution (deep learning's, which is a cross-correlation) slides a kernel over the
input and takes a dot product at every position. Copy each receptive patch into a column
(im2col) and the whole layer is one matrix product:

    x (batch, c_in, h, w) ─ pad, cut k_h·k_w shifted views ─▶ cols (batch, c_in·k_h·k_w, L)
    weight (c_out, c_in, k_h, k_w) ─ flatten ─▶ (c_out, c_in·k_h·k_w)
    out = weight_flat @ cols + bias ─▶ (batch, c_out, L) ─ reshape ─▶ (batch, c_out, h_out, w_out)

with ``L = h_out·w_out`` and, along each axis (Dumoulin & Visin's arithmetic),

    h_out = ⌊(h + 2·padding − dilation·(k − 1) − 1) / stride⌋ + 1.

The gradients follow from the product: ∂L/∂weight_flat = Σ_batch ∂L/∂out · colsᵀ, and
∂L/∂x is weight_flatᵀ · ∂L/∂out scattered back onto the pixels (col2im, the adjoint of
im2col: a transposed convolution). Pooling cuts the same windows and reduces each one
with a max or a mean instead of a dot product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from zen import validate


def output_size(
    size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> int:
    """Positions of a sliding window along one axis: ⌊(size + 2p − d(k − 1) − 1)/s⌋ + 1."""
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def _check_windows(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int],
    padding: int | tuple[int, int],
    dilation: int | tuple[int, int],
) -> tuple[tuple[int, int], ...]:
    """Read the four window arguments as pairs and check the window fits ``x``'s padded size."""
    (kh, kw), (sh, sw) = validate.pair(kernel_size, "kernel_size"), validate.pair(stride, "stride")
    (ph, pw) = validate.pair(padding, "padding", minimum=0)
    (dh, dw) = validate.pair(dilation, "dilation")
    validate.window_fits(x.shape[2], dh * (kh - 1) + 1, ph, "height")
    validate.window_fits(x.shape[3], dw * (kw - 1) + 1, pw, "width")
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw)


def im2col(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    pad_value: float = 0.0,
) -> torch.Tensor:
    """Cut every window of ``x`` (batch, c, h, w) into (batch, c, k_h·k_w, h_out, w_out).

    Entry ``[b, c, i·k_w + j, r, s]`` is the padded input at row ``r·stride + i·dilation``,
    column ``s·stride + j·dilation``: one strided view per kernel offset ``(i, j)``.
    """
    validate.ndim(x, 4, "x", "(batch, channels, height, width)")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _check_windows(
        x, kernel_size, stride, padding, dilation
    )
    h_out = output_size(x.shape[2], kh, sh, ph, dh)
    w_out = output_size(x.shape[3], kw, sw, pw, dw)
    xp = F.pad(x, (pw, pw, ph, ph), value=pad_value)  # (batch, c, h + 2ph, w + 2pw)
    views = [
        xp[
            :,
            :,
            i * dh : i * dh + sh * (h_out - 1) + 1 : sh,
            j * dw : j * dw + sw * (w_out - 1) + 1 : sw,
        ]
        for i in range(kh)
        for j in range(kw)
    ]  # k_h·k_w views of (batch, c, h_out, w_out)
    return torch.stack(views, dim=2)  # (batch, c, k_h·k_w, h_out, w_out)


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    use_builtin: bool = False,
) -> torch.Tensor:
    """2-D convolution with ``torch.nn.functional.conv2d``'s semantics (NCHW, groups = 1).

    Args:
        x: ``(batch, c_in, h, w)``.
        weight: ``(c_out, c_in, k_h, k_w)``.
        bias: ``(c_out,)`` or ``None``.
        use_builtin: call ``F.conv2d`` instead of im2col + matmul (the same numbers).

    Returns ``(batch, c_out, h_out, w_out)``; gradients flow to ``x``, ``weight`` and ``bias``.
    """
    validate.ndim(x, 4, "x", "(batch, c_in, height, width)")
    validate.ndim(weight, 4, "weight", "(c_out, c_in, k_h, k_w)")
    validate.channels(x, weight.shape[1], "x", f"weight of shape {tuple(weight.shape)}")
    if bias is not None and (bias.ndim != 1 or bias.shape[0] != weight.shape[0]):
        raise ValueError(
            f"bias must have shape ({weight.shape[0]},) (one per output channel), "
            f"got {tuple(bias.shape)}"
        )
    _check_windows(x, tuple(weight.shape[2:]), stride, padding, dilation)
    if use_builtin:
        return F.conv2d(x, weight, bias, stride, padding, dilation)
    kernel = tuple(weight.shape[2:])
    cols = im2col(x, kernel, stride, padding, dilation)  # (b, c_in, k_h·k_w, h_out, w_out)
    h_out, w_out = cols.shape[-2:]
    cols = rearrange(cols, "b c k h w -> b (c k) (h w)")  # (batch, c_in·k_h·k_w, L)
    w_flat = rearrange(weight, "o c i j -> o (c i j)")  # (c_out, c_in·k_h·k_w)
    out = w_flat @ cols  # (batch, c_out, L)
    if bias is not None:
        out = out + bias[:, None]
    return rearrange(out, "b o (h w) -> b o h w", h=h_out, w=w_out)


def _pool_windows(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None,
    pad_value: float,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    """The pooling windows of ``x`` (batch, c, h, w): (batch, c, k_h·k_w, h_out, w_out)."""
    validate.ndim(x, 4, "x", "(batch, channels, height, width)")
    stride = kernel_size if stride is None else stride
    (kh, kw) = validate.pair(kernel_size, "kernel_size")
    (ph, pw) = validate.pair(padding, "padding", minimum=0)
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(
            f"padding must be at most half the kernel size, got padding={padding!r}, "
            f"kernel_size={kernel_size!r}"
        )
    return im2col(x, kernel_size, stride, padding, pad_value=pad_value)


def max_pool2d(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    """Max over each window, as ``F.max_pool2d`` (``stride`` defaults to ``kernel_size``).

    ``x`` ``(batch, c, h, w)`` → ``(batch, c, h_out, w_out)``. The gradient of each output
    reaches only its window's largest input (the argmax); padding counts as −∞.
    """
    windows = _pool_windows(x, kernel_size, stride, float("-inf"), padding)
    return windows.max(dim=2).values  # (batch, c, h_out, w_out)


def avg_pool2d(
    x: torch.Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    """Mean over each window, as ``F.avg_pool2d`` (padding counted as zeros in the mean).

    ``x`` ``(batch, c, h, w)`` → ``(batch, c, h_out, w_out)``; every input of a window gets
    the same share of its output's gradient.
    """
    return _pool_windows(x, kernel_size, stride, 0.0, padding).mean(dim=2)


def receptive_field(
    kernel_sizes: list[int], strides: list[int], dilations: list[int] | None = None
) -> int:
    """Receptive field (pixels along one axis) of a stack of sliding-window layers.

    ``r = 1 + Σ_l d_l·(k_l − 1)·Π_{m<l} s_m``: each layer widens the field by its extent minus
    one, measured in input pixels (the product of the strides before it).
    """
    dilations = dilations or [1] * len(kernel_sizes)
    if not len(kernel_sizes) == len(strides) == len(dilations):
        raise ValueError(
            "kernel_sizes, strides and dilations must have one entry per layer, got "
            f"{len(kernel_sizes)}, {len(strides)} and {len(dilations)}"
        )
    field, jump = 1, 1
    for k, s, d in zip(kernel_sizes, strides, dilations):
        field += d * (k - 1) * jump
        jump *= s
    return field
