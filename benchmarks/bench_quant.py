"""Benchmark: int8 vs fp32 linear layers on CPU — speed, error and size on disk.

::

    python benchmarks/bench_quant.py                 # default shapes, torch's thread count
    python benchmarks/bench_quant.py --threads 1

Three implementations of ``y = x Wᵀ + b`` with the same weights:

* ``fp32``: ``nn.Linear`` (float BLAS);
* ``torch int8``: ``torch.ao.quantization.quantize_dynamic`` — int8 weights per tensor,
  activations quantized on the fly, FBGEMM/oneDNN int8 kernels;
* ``zen int8``: :class:`zen.compress.quant.Int8Linear` — int8 weights per output channel,
  activations per row, the readable int32 matmul (no vectorised int8 kernel).

Error is ``max |y − y_fp32| / max |y_fp32|``. Sizes are bytes of ``torch.save(state_dict)`` of a
4-layer MLP before and after quantization. Weights are random (``torch.manual_seed(0)``).
"""

from __future__ import annotations

import argparse
import copy
import io
import platform
import sys
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils import benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zen.compress import quant  # noqa: E402
from zen.swap import swap_linears  # noqa: E402


def dynamic_int8(module: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        return torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)


def median_time(fn, x) -> float:
    with torch.no_grad():
        return (
            benchmark.Timer("f(x)", globals={"f": fn, "x": x})
            .blocked_autorange(min_run_time=0.5)
            .median
        )


def state_bytes(module: nn.Module) -> int:
    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--shapes",
        default="64x1024x1024,256x1024x1024,16x4096x4096",
        help="comma-separated batch x in x out",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads {torch.get_num_threads()}"
    )

    print(
        "\n| batch × in × out | fp32 ms | torch int8 ms | zen int8 ms "
        "| torch int8 speed-up | zen int8 speed-up | torch int8 error | zen int8 error |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for shape in args.shapes.split(","):
        b, d_in, d_out = (int(v) for v in shape.split("x"))
        lin = nn.Linear(d_in, d_out)
        x = torch.randn(b, d_in)
        tq, zq = dynamic_int8(nn.Sequential(lin)), quant.Int8Linear.from_float(lin)
        with torch.no_grad():
            ref = lin(x)
            err = {
                n: ((m(x) - ref).abs().max() / ref.abs().max()).item()
                for n, m in (("torch", tq), ("zen", zq))
            }
        t = {n: median_time(m, x) for n, m in (("fp32", lin), ("torch", tq), ("zen", zq))}
        print(
            f"| {b} × {d_in} × {d_out} "
            f"| {t['fp32'] * 1e3:.2f} | {t['torch'] * 1e3:.2f} | {t['zen'] * 1e3:.2f} "
            f"| {t['fp32'] / t['torch']:.2f}× | {t['fp32'] / t['zen']:.2f}× "
            f"| {err['torch']:.2e} | {err['zen']:.2e} |"
        )

    dims = [1024, 2048, 2048, 1024]
    mlp = nn.Sequential(
        *[m for a, b in zip(dims, dims[1:]) for m in (nn.Linear(a, b), nn.ReLU())][:-1]
    )
    n = sum(p.numel() for p in mlp.parameters())
    fp32 = state_bytes(mlp)
    tq_bytes = state_bytes(dynamic_int8(mlp))
    zq_bytes = state_bytes(swap_linears(copy.deepcopy(mlp), quant.Int8Linear.from_float))
    print(
        f"\nMLP {'-'.join(map(str, dims))} ({n / 1e6:.2f} M parameters), torch.save(state_dict):\n"
    )
    print("| format | bytes on disk | ratio to fp32 |")
    print("|---|---:|---:|")
    for name, size in (
        ("fp32", fp32),
        ("torch dynamic int8", tq_bytes),
        ("zen Int8Linear", zq_bytes),
    ):
        print(f"| {name} | {size:,} | {fp32 / size:.2f} |")


if __name__ == "__main__":
    main()
