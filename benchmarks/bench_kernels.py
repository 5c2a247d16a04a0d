"""Benchmark the Triton kernels of zen.kernels against PyTorch, on a CUDA GPU.

Three tables, forward passes only, medians of interleaved repetitions (``timing.py``):

1. ``zen.kernels.softmax`` vs ``torch.softmax`` on ``(rows, n)``, in GB/s (2 · rows · n
   elements moved: one read, one write — the minimum any softmax moves);
2. ``zen.kernels.matmul`` vs ``torch.matmul`` on square ``(n, n) @ (n, n)``, in TFLOP/s
   (2n³ FLOPs);
3. ``zen.kernels.flash_attention`` (its Triton forward) vs ``F.scaled_dot_product_attention``
   (PyTorch's flash kernel where the GPU has it), causal and not, head dims 64 and 128,
   ``batch · seq = 16k`` tokens and ``heads · d_head = 2048`` (FlashAttention-2's set-up), in
   TFLOP/s (4 · batch · heads · seq² · d_head FLOPs, half of it when causal).

Ratio = zen throughput / PyTorch throughput (above 1: zen is faster). Each row first checks that
the two outputs agree. Triton kernels are timed only on a GPU: without CUDA the script runs every
kernel once at tiny sizes in Triton's interpreter (a correctness smoke test, no timings — the
interpreter executes kernels with NumPy and says nothing about kernel speed).

    python benchmarks/bench_kernels.py                       # CUDA: bf16, all three tables
    python benchmarks/bench_kernels.py --seqs 1024 4096      # fewer attention rows

Record results in benchmarks/RESULTS_kernels.md with the device named.
"""

from __future__ import annotations

import argparse
import os
import platform

import torch
import torch.nn.functional as F
from timing import interleaved_medians

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def randn(*shape: int, device: torch.device, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).to(device, dtype)


def check(name: str, got: torch.Tensor, expected: torch.Tensor, atol: float) -> float:
    err = (got.float() - expected.float()).abs().max().item()
    if not err <= atol:
        raise SystemExit(f"{name}: zen and PyTorch differ by {err:.3g} (> {atol}): not timed")
    return err


def softmax_table(args, kernels, device, dtype) -> None:
    print(f"\n1. softmax over the last dim of (rows={args.rows}, n), {args.dtype}: GB/s")
    print(f"{'n':>7}{'zen GB/s':>10}{'torch GB/s':>12}{'ratio':>8}{'max err':>10}")
    for n in args.softmax_cols:
        x = randn(args.rows, n, device=device, dtype=dtype, seed=n)
        err = check(f"softmax n={n}", kernels.softmax(x), torch.softmax(x.float(), -1), 1e-2)
        t = interleaved_medians(
            {"zen": lambda: kernels.softmax(x), "torch": lambda: torch.softmax(x, -1)},
            device,
            args.warmup,
            args.reps,
        )
        gbs = {k: 2 * x.numel() * x.element_size() / s / 1e9 for k, s in t.items()}
        ratio = gbs["zen"] / gbs["torch"]
        print(f"{n:>7}{gbs['zen']:>10.0f}{gbs['torch']:>12.0f}{ratio:>8.2f}{err:>10.1e}")


def matmul_table(args, kernels, device, dtype) -> None:
    print(f"\n2. matmul (n, n) @ (n, n), {args.dtype}: TFLOP/s")
    print(f"{'n':>7}{'zen TFLOP/s':>13}{'torch TFLOP/s':>15}{'ratio':>8}{'max err':>10}")
    for n in args.matmul_sizes:
        a = randn(n, n, device=device, dtype=dtype, seed=1)
        b = randn(n, n, device=device, dtype=dtype, seed=2)
        ref = a.float() @ b.float()
        err = check(f"matmul n={n}", kernels.matmul(a, b), ref, 2e-2 * n**0.5)
        t = interleaved_medians(
            {"zen": lambda: kernels.matmul(a, b), "torch": lambda: a @ b},
            device,
            args.warmup,
            args.reps,
        )
        tf = {k: 2 * n**3 / s / 1e12 for k, s in t.items()}
        ratio = tf["zen"] / tf["torch"]
        print(f"{n:>7}{tf['zen']:>13.1f}{tf['torch']:>15.1f}{ratio:>8.2f}{err:>10.1e}")


def flash_table(args, kernels, device, dtype) -> None:
    print(
        f"\n3. attention forward, batch·seq = {args.tokens}, heads·d_head = {args.width}, "
        f"{args.dtype}: TFLOP/s"
    )
    print(
        f"{'d_head':>7}{'causal':>8}{'seq':>7}{'zen TFLOP/s':>13}{'sdpa TFLOP/s':>14}"
        f"{'ratio':>8}{'max err':>10}"
    )
    for d in args.d_heads:
        for causal in (False, True):
            for n in args.seqs:
                b, h = max(1, args.tokens // n), args.width // d
                q, k, v = (randn(b, h, n, d, device=device, dtype=dtype, seed=s) for s in range(3))
                ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                err = check(
                    f"flash d={d} n={n}", kernels.flash_attention(q, k, v, causal), ref, 3e-2
                )
                t = interleaved_medians(
                    {
                        "zen": lambda: kernels.flash_attention(q, k, v, causal),
                        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal),
                    },
                    device,
                    args.warmup,
                    args.reps,
                )
                flops = 4 * b * h * n * n * d / (2 if causal else 1)
                tf = {key: flops / s / 1e12 for key, s in t.items()}
                print(
                    f"{d:>7}{causal!s:>8}{n:>7}{tf['zen']:>13.1f}{tf['sdpa']:>14.1f}"
                    f"{tf['zen'] / tf['sdpa']:>8.2f}{err:>10.1e}"
                )


def smoke(kernels) -> None:
    """Run each kernel once at tiny sizes in the interpreter and check it: no timings."""
    x = randn(4, 50, device=torch.device("cpu"), dtype=torch.float32, seed=0)
    check("softmax", kernels.softmax(x), torch.softmax(x, -1), 1e-5)
    a, b = x[:, :40], randn(40, 20, device=torch.device("cpu"), dtype=torch.float32, seed=1)
    check("matmul", kernels.matmul(a, b), a @ b, 1e-4)
    q, k, v = (
        randn(1, 2, 40, 16, device=torch.device("cpu"), dtype=torch.float32, seed=s)
        for s in range(3)
    )
    for causal in (False, True):
        ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        check("flash", kernels.flash_attention(q, k, v, causal), ref, 1e-5)
    print(
        "no CUDA device: each kernel ran once in Triton's interpreter and matched PyTorch; "
        "no timings (interpreter time is not kernel speed). Run on a GPU to benchmark."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", choices=list(DTYPES), default="bfloat16")
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--softmax-cols", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--matmul-sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--d-heads", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--seqs", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--tokens", type=int, default=16384, help="batch · seq")
    parser.add_argument("--width", type=int, default=2048, help="heads · d_head")
    parser.add_argument("--tables", nargs="+", default=["softmax", "matmul", "flash"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    if not cuda:  # before zen.kernels is imported: its kernels are defined at import
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from zen import kernels

    if not cuda:
        smoke(kernels)
        return
    device, dtype = torch.device("cuda"), DTYPES[args.dtype]
    import triton

    print(
        f"{torch.cuda.get_device_name()} — torch {torch.__version__}, triton {triton.__version__}, "
        f"{platform.python_version()}"
    )
    tables = {"softmax": softmax_table, "matmul": matmul_table, "flash": flash_table}
    for name in args.tables:
        tables[name](args, kernels, device, dtype)


if __name__ == "__main__":
    main()
