"""A tiled matrix product: each program computes one ``(BLOCK_M, BLOCK_N)`` tile of ``a @ b``.

The program walks along ``k`` in steps of ``BLOCK_K``, loading a tile of ``a`` and a tile of
``b`` and adding their product (``tl.dot``) to a float32 accumulator held in registers; only
the finished tile is written. Every element of ``a`` is then read ``n / BLOCK_N`` times instead
of ``n`` times. Edges where a shape is not a multiple of the block are masked: loads read 0 past
the edge, stores skip it, so any shape works.

    a (m, k) @ b (k, n) -> (m, n)
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from zen import validate
from zen.kernels import launch


@triton.jit
def _matmul_kernel(
    a_ptr, b_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # rows of this tile
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # columns of this tile
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        a = tl.load(
            a_ptr + rm[:, None] * stride_am + kk[None, :] * stride_ak,
            mask=(rm[:, None] < M) & (kk[None, :] < K),
            other=0.0,
        )  # (BLOCK_M, BLOCK_K), zeros past the edges
        b = tl.load(
            b_ptr + kk[:, None] * stride_bk + rn[None, :] * stride_bn,
            mask=(kk[:, None] < K) & (rn[None, :] < N),
            other=0.0,
        )  # (BLOCK_K, BLOCK_N)
        acc = tl.dot(a, b, acc)  # acc += a @ b in float32
    c = acc.to(c_ptr.dtype.element_ty)
    tl.store(
        c_ptr + rm[:, None] * stride_cm + rn[None, :] * stride_cn,
        c,
        mask=(rm[:, None] < M) & (rn[None, :] < N),
    )


def matmul(
    a: torch.Tensor, b: torch.Tensor, block: tuple[int, int, int] | None = None
) -> torch.Tensor:
    """``a @ b`` for ``a (m, k)`` and ``b (k, n)`` of one dtype, by the tiled Triton kernel.

    ``block`` = ``(BLOCK_M, BLOCK_N, BLOCK_K)``, powers of two ≥ 16; by default 64×64×32 on a GPU
    and 32×32×32 in the interpreter (fewer, smaller programs run faster there).
    """
    launch.check(a, "a", _matmul_kernel, uses_dot=True)
    launch.check(b, "b", _matmul_kernel, uses_dot=True)
    validate.ndim(a, 2, "a", "(m, k)")
    validate.ndim(b, 2, "b", "(k, n)")
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"a (m, k) and b (k, n) must share k: got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.dtype != b.dtype or a.device != b.device:
        raise TypeError(
            "a and b must share dtype and device: "
            f"got {a.dtype} on {a.device} and {b.dtype} on {b.device}"
        )
    if block is None:
        block = (32, 32, 32) if launch.interpreted(_matmul_kernel) else (64, 64, 32)
    if any(s < 16 or s & (s - 1) for s in block):
        raise ValueError(f"block sizes must be powers of two of at least 16, got {block}")
    (M, K), N = a.shape, b.shape[1]
    c = torch.empty(M, N, dtype=a.dtype, device=a.device)
    if M * N == 0:
        return c
    if K == 0:
        return c.zero_()
    bm, bn, bk = block
    grid = (triton.cdiv(M, bm), triton.cdiv(N, bn))
    _matmul_kernel[grid](
        a, b, c, M, N, K,
        a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
    )  # fmt: skip
    return c


def matmul_reference(a: torch.Tensor, b: torch.Tensor, block: int = 32) -> torch.Tensor:
    """The kernel's algorithm in plain PyTorch: ``(block × block)`` output tiles, a float32
    accumulator per tile, ``k`` walked in steps of ``block``; slicing clips the edges."""
    (M, K), N = a.shape, b.shape[1]
    c = torch.empty(M, N, dtype=a.dtype, device=a.device)
    for i in range(0, M, block):  # one iteration = one program of the kernel
        for j in range(0, N, block):
            acc = torch.zeros(min(block, M - i), min(block, N - j), device=a.device)
            for k0 in range(0, K, block):
                acc += (
                    a[i : i + block, k0 : k0 + block].float()
                    @ b[k0 : k0 + block, j : j + block].float()
                )
            c[i : i + block, j : j + block] = acc.to(a.dtype)
    return c
