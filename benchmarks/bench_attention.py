"""Benchmark zen attention against PyTorch's built-ins, over sequence lengths.

Two tables, each timing one forward + backward pass (median of interleaved repetitions):

1. **Scaled dot-product attention** on ``(batch, heads, seq, d_head)`` tensors, causal:
   ``zen.attention.scaled_dot_product_attention`` (the readable path: it forms the
   ``(seq, seq)`` score matrix) against ``torch.nn.functional.scaled_dot_product_attention``
   (fused kernels: flash / memory-efficient attention where the device has them).
2. **Multi-head attention** on ``(batch, seq, d_model)``, causal: ``zen.attention.
   MultiHeadAttention`` readable and with ``use_builtin=True``, against
   ``torch.nn.MultiheadAttention`` with the same weights.

Ratios are zen time / PyTorch time (> 1: zen is slower). On CUDA the tables also give the peak
memory allocated during the pass (``torch.cuda.max_memory_allocated``) and its ratio; the
readable path's memory grows as seq², the fused kernels' as seq.

    python benchmarks/bench_attention.py                             # CPU, float32
    python benchmarks/bench_attention.py --device cuda --dtype bfloat16 \
        --seqs 512 1024 2048 4096 8192

Record results in benchmarks/RESULTS_attention.md with the device named.
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F
from timing import forward_backward, interleaved_medians, synchronize
from torch import nn

from zen.attention import MultiHeadAttention, scaled_dot_product_attention


def peak_memory(fn, device: torch.device) -> float | None:
    """Peak bytes allocated on a CUDA device while ``fn()`` runs, above what was live before it."""
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    synchronize(device)
    return float(torch.cuda.max_memory_allocated(device) - before)


def mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x / 2**20:,.1f}"


def sdpa_table(args, device: torch.device, dtype: torch.dtype) -> None:
    b, h, d = args.batch, args.heads, args.d_head
    print(
        "\n1. scaled dot-product attention, causal, forward + backward: "
        f"(batch={b}, heads={h}, seq, d_head={d})"
    )
    print(
        f"{'seq':>6}{'zen ms':>10}{'torch ms':>10}{'ratio':>8}"
        f"{'zen MiB':>11}{'torch MiB':>11}{'ratio':>8}"
    )
    for n in args.seqs:
        gen = torch.Generator(device="cpu").manual_seed(n)
        q, k, v = (
            torch.randn(b, h, n, d, generator=gen).to(device, dtype).requires_grad_()
            for _ in range(3)
        )
        fns = {
            "zen": forward_backward(
                lambda: scaled_dot_product_attention(q, k, v, is_causal=True).float().sum(),
                [q, k, v],
            ),
            "torch": forward_backward(
                lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).float().sum(),
                [q, k, v],
            ),
        }
        t = interleaved_medians(fns, device, args.warmup, args.reps)
        m = {name: peak_memory(fn, device) for name, fn in fns.items()}
        m_ratio = "n/a" if m["torch"] is None else f"{m['zen'] / m['torch']:.2f}"
        print(
            f"{n:>6}{t['zen'] * 1e3:>10.2f}{t['torch'] * 1e3:>10.2f}{t['zen'] / t['torch']:>8.2f}"
            f"{mib(m['zen']):>11}{mib(m['torch']):>11}{m_ratio:>8}"
        )


def mha_table(args, device: torch.device, dtype: torch.dtype) -> None:
    b, h, d_model = args.batch, args.heads, args.heads * args.d_head
    print(
        "\n2. multi-head attention, causal, forward + backward: "
        f"(batch={b}, seq, d_model={d_model}), {h} heads"
    )
    print(
        f"{'seq':>6}{'zen ms':>10}{'zen fused ms':>14}{'torch ms':>10}"
        f"{'ratio':>8}{'fused ratio':>13}"
        f"{'zen MiB':>10}{'fused MiB':>11}{'torch MiB':>11}"
    )
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(d_model, h, batch_first=True).to(device, dtype)
    readable = MultiHeadAttention(d_model, h).to(device, dtype).load_torch_weights(ref)
    fused = (
        MultiHeadAttention(d_model, h, use_builtin=True).to(device, dtype).load_torch_weights(ref)
    )

    for n in args.seqs:
        x = (
            torch.randn(b, n, d_model, generator=torch.Generator().manual_seed(n))
            .to(device, dtype)
            .requires_grad_()
        )
        causal = torch.ones(n, n, dtype=torch.bool, device=device).triu(
            1
        )  # nn.MultiheadAttention: True = blocked
        with torch.no_grad():
            diff = (
                (
                    readable(x, is_causal=True)
                    - ref(x, x, x, attn_mask=causal, need_weights=False)[0]
                )
                .abs()
                .max()
            )
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        if diff > tol:
            raise AssertionError(
                f"zen and torch disagree at seq {n}: max |diff| = {diff:.2e} > {tol}"
            )
        fns = {
            "zen": forward_backward(lambda: readable(x, is_causal=True).float().sum(), [x]),
            "fused": forward_backward(lambda: fused(x, is_causal=True).float().sum(), [x]),
            "torch": forward_backward(
                lambda: (
                    ref(x, x, x, attn_mask=causal, is_causal=True, need_weights=False)[0]
                    .float()
                    .sum()
                ),
                [x],
            ),
        }
        t = interleaved_medians(fns, device, args.warmup, args.reps)
        m = {name: peak_memory(fn, device) for name, fn in fns.items()}
        print(
            f"{n:>6}{t['zen'] * 1e3:>10.2f}{t['fused'] * 1e3:>14.2f}{t['torch'] * 1e3:>10.2f}"
            f"{t['zen'] / t['torch']:>8.2f}{t['fused'] / t['torch']:>13.2f}"
            f"{mib(m['zen']):>10}{mib(m['fused']):>11}{mib(m['torch']):>11}"
        )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--d-head", type=int, default=64)
    p.add_argument("--seqs", type=int, nargs="+", default=[128, 256, 512, 1024])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--reps", type=int, default=10)
    args = p.parse_args(argv)

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = (
            f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    print(f"device: {name}; torch {torch.__version__}; dtype {args.dtype}")
    sdpa_table(args, device, dtype)
    mha_table(args, device, dtype)


if __name__ == "__main__":
    main()
