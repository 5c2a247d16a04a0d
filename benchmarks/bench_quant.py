"""Benchmark: weight-only int8 / int4 and W8A8 matmuls vs fp32 — speed, error, size on disk.

::

    python benchmarks/bench_quant.py                 # default shapes, torch's thread count
    python benchmarks/bench_quant.py --threads 1

Implementations of ``y = x Wᵀ`` with the same weights (``W`` random normal, seed 0):

* ``fp32``: ``F.linear`` (float BLAS);
* ``W8A8``: int8 weights per output channel, activations quantized per row on the fly,
  ``torch._int_mm`` (int8 × int8 → int32), one rescale;
* ``int8 w-only``: ``torch._weight_int8pack_mm`` (float activations, int8 weights, per-channel
  scales);
* ``int4 w-only``: round-to-nearest int4 in groups of 32 (:mod:`zen.compress.rtn`), packed with
  ``torch._convert_weight_to_int4pack_for_cpu`` and run by ``torch._weight_int4pack_mm_for_cpu``;
* ``int4 unpack``: the readable path — unpack :func:`zen.compress.rtn.pack_codes` bytes,
  dequantize, fp32 matmul, every call.

Error is ``max |y − y_fp32| / max |y_fp32|``. Sizes are bytes of ``torch.save`` of a 4-layer
MLP's weights in fp32, int8 (codes + fp32 per-channel scales) and packed int4 (two codes per
byte + fp16 scales per group of 32). On a CUDA machine the fp32 / W8A8 / int8 rows are repeated
on the GPU (the CPU-only int4 kernels are skipped there).
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# this script's folder, as the other benchmarks do (opacus installs a `benchmarks` package)
from timing import interleaved_medians  # noqa: E402

from zen.compress import quant, rtn  # noqa: E402


def contenders(w: torch.Tensor, device: torch.device) -> dict[str, object]:
    """name -> function of x computing x Wᵀ."""
    w8 = quant.quantize(w, 8, axis=0)  # (out, in) int8, scales (out, 1)
    q8, s8 = w8.q.to(device), w8.scale.to(device)
    q8_t = q8.T.contiguous()

    def w8a8(x):
        qx = quant.quantize(x, 8, axis=0)
        return torch._int_mm(qx.q, q8_t).float() * qx.scale * s8.T

    fns = {
        "fp32": lambda x: F.linear(x, w.to(device)),
        "W8A8 (_int_mm)": w8a8,
        "int8 w-only": lambda x: torch._weight_int8pack_mm(x, q8, s8.flatten()),
    }
    if device.type == "cpu":
        q4, s4 = rtn.rtn_quantize(w, 4, 32)
        tiny = torch._convert_weight_to_int4pack_for_cpu(q4.int() + 8, 1)
        sz = torch.stack([s4.T, torch.zeros_like(s4.T)], dim=-1).contiguous()  # (groups, out, 2)
        packed = rtn.pack_codes(q4, 4)
        fns["int4 w-only"] = lambda x: torch._weight_int4pack_mm_for_cpu(x, tiny, 32, sz)
        fns["int4 unpack"] = lambda x: F.linear(
            x, rtn.rtn_dequantize(rtn.unpack_codes(packed, 4, w.shape), s4)
        )
    return fns


def bench_shapes(shapes: str, device: torch.device) -> None:
    print(f"\n### {device.type.upper()}: time (ms) and speed-up over fp32, relative max error\n")
    header = None
    for shape in shapes.split(","):
        b, d_in, d_out = (int(v) for v in shape.split("x"))
        g = torch.Generator().manual_seed(0)
        w = torch.randn(d_out, d_in, generator=g)
        x = torch.randn(b, d_in, generator=g).to(device)
        fns = contenders(w, device)
        if header is None:
            header = list(fns)
            print("| batch × in × out | " + " | ".join(header) + " |")
            print("|---|" + "---:|" * len(header))
        with torch.no_grad():
            ref = fns["fp32"](x)
            err = {n: ((f(x) - ref).abs().max() / ref.abs().max()).item() for n, f in fns.items()}
            t = interleaved_medians({n: (lambda f=f: f(x)) for n, f in fns.items()}, device, 3, 15)
        cells = [
            f"{t[n] * 1e3:.2f} ({t['fp32'] / t[n]:.2f}×, {err[n]:.1e})" if n != "fp32"
            else f"{t[n] * 1e3:.2f}"
            for n in header
        ]  # fmt: skip
        print(f"| {b} × {d_in} × {d_out} | " + " | ".join(cells) + " |")


def disk_bytes(obj: object) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getbuffer().nbytes


def bench_sizes() -> None:
    dims = [1024, 2048, 2048, 1024]
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(o, i, generator=g) for i, o in zip(dims, dims[1:])]
    n = sum(w.numel() for w in ws)
    fp32 = disk_bytes(ws)
    int8 = disk_bytes([(qt.q, qt.scale) for qt in (quant.quantize(w, 8, axis=0) for w in ws)])
    int4 = disk_bytes(
        [(rtn.pack_codes(q, 4), s.half()) for q, s in (rtn.rtn_quantize(w, 4, 32) for w in ws)]
    )
    print(f"\n### Size on disk: MLP {'-'.join(map(str, dims))} weights ({n / 1e6:.2f} M), "
          "torch.save\n")  # fmt: skip
    print("| format | bytes | ratio to fp32 | bits per weight |")
    print("|---|---:|---:|---:|")
    for name, size in (("fp32", fp32), ("int8 per channel", int8), ("int4 groups of 32", int4)):
        print(f"| {name} | {size:,} | {fp32 / size:.2f} | {8 * size / n:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--shapes",
        default="1x4096x4096,16x4096x4096,256x1024x1024",
        help="comma-separated batch x in x out",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"threads {torch.get_num_threads()}")  # fmt: skip
    bench_shapes(args.shapes, torch.device("cpu"))
    if torch.cuda.is_available():
        print(f"\nGPU: {torch.cuda.get_device_name()}")
        bench_shapes(args.shapes, torch.device("cuda"))
    else:
        print("\n(no CUDA device: GPU rows skipped)")
    bench_sizes()


if __name__ == "__main__":
    main()
