"""Benchmark: the single-device efficiency levers of the efficiency chapter, on any device.

    python benchmarks/bench_efficiency.py                 # CPU: a small pre-norm stack
    python benchmarks/bench_efficiency.py --d-model 1024 --layers 12 --seq 1024   # a GPU

For one training step (forward, backward) of a stack of ``zen.transformer`` blocks it prints

* the step time in fp32, under bf16 autocast, and with every block checkpointed
  (``torch.utils.checkpoint``, non-reentrant), as medians of interleaved repetitions
  (``benchmarks/timing.py``) — ratios against fp32 are the numbers to read;
* the bytes kept for backward: predicted by ``zen.memory.block_activation_bytes`` and measured
  with ``zen.memory.SavedBytes``, and on CUDA the allocator's growth over the forward pass
  (``torch.cuda.memory_allocated``) and peak (``torch.cuda.max_memory_allocated``);
* the MFU of the fp32 and bf16 steps against the measured peak of a large matmul in that
  dtype (FLOPs ``6 N T + 12 · layers · L · d · T``).

Record results in ``benchmarks/RESULTS_efficiency.md`` with the device named.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch
import torch.utils.checkpoint as cp
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved_medians, synchronize  # noqa: E402

from zen import memory  # noqa: E402
from zen.transformer import BlockConfig, TransformerBlock  # noqa: E402


def peak_flops(device: torch.device, dtype: torch.dtype, n: int) -> float:
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    t = interleaved_medians({"mm": lambda: a @ b}, device, warmup=2, reps=5)["mm"]
    return 2 * n**3 / t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor()
    print(f"device: {device} ({name or platform.machine()}), threads {torch.get_num_threads()}")

    cfg = BlockConfig(d_model=args.d_model, n_heads=args.heads, norm_first=True)
    blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(args.layers)).to(device)
    x = torch.randn(args.batch, args.seq, args.d_model, device=device, requires_grad=True)

    def step(ckpt: bool = False, bf16: bool = False) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            h = x
            for b in blocks:
                h = cp.checkpoint(b, h, use_reentrant=False) if ckpt else b(h)
            h.float().pow(2).mean().backward()

    times = interleaved_medians(
        {
            "fp32": lambda: step(),
            "bf16 autocast": lambda: step(bf16=True),
            "fp32, checkpointed": lambda: step(ckpt=True),
        },
        device,
        warmup=2,
        reps=args.reps,
    )
    tokens = args.batch * args.seq
    n_lin = sum(m.weight.numel() for m in blocks.modules() if isinstance(m, nn.Linear))
    flops = 6 * n_lin * tokens + 12 * args.layers * args.seq * args.d_model * tokens
    peaks = {
        "fp32": peak_flops(device, torch.float32, 2048 if device.type == "cuda" else 512),
        "bf16 autocast": peak_flops(device, torch.bfloat16, 2048 if device.type == "cuda" else 512),
    }
    print("\n| step | ms | × fp32 | MFU |\n|---|---|---|---|")
    for k, t in times.items():
        mfu = f"{flops / t / peaks[k]:.1%}" if k in peaks else "–"
        print(f"| {k} | {t * 1e3:.2f} | {t / times['fp32']:.2f} | {mfu} |")

    pred = args.layers * memory.block_activation_bytes(
        args.batch, args.seq, args.d_model, args.heads
    )
    with memory.SavedBytes(exclude=blocks.parameters()) as saved:
        h = x
        for b in blocks:
            h = b(h)
    print(
        f"\nsaved for backward: predicted {pred / 2**20:.2f} MiB, "
        f"measured (saved tensors) {saved.nbytes / 2**20:.2f} MiB"
    )
    del h, saved
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        h = x
        for b in blocks:
            h = b(h)
        grown = torch.cuda.memory_allocated() - base - h.nbytes + x.nbytes
        h.pow(2).mean().backward()
        print(
            f"CUDA allocator: grew {grown / 2**20:.2f} MiB over the forward "
            f"({grown / pred:.3f} × predicted), peak "
            f"{(torch.cuda.max_memory_allocated() - base) / 2**20:.2f} MiB above the start"
        )


if __name__ == "__main__":
    main()
