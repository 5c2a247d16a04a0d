"""Data-parallel throughput against the number of processes, and the α–β model's prediction.

Weak scaling: every process trains on ``--batch`` examples per step, so ``p`` processes see
``p × batch`` examples; with free communication the throughput would grow ``p``-fold. One
step is timed in two parts, separated by barriers:

* compute — forward and backward on the local batch;
* communication — the gradient all-reduce (``dist.all_reduce`` of one flat bucket, as
  ``zen.parallel.data_parallel.all_reduce_gradients`` does).

α and β are fitted once from a ping-pong between two processes; the model then predicts the
all-reduce as ``2(p-1)α + 2(p-1)/p · nβ`` (the ring) and the throughput as
``p · batch / (measured compute + predicted all-reduce)``.

    python benchmarks/bench_data_parallel.py                    # CPU processes, gloo
    python benchmarks/bench_data_parallel.py --backend nccl     # one process per GPU

On a machine with fewer cores than processes the compute time itself grows with ``p``
(processes share cores); the table shows it separately so the communication model can be
judged on its own.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zen.parallel import launch
from zen.parallel.collectives import all_reduce_time, fit_alpha_beta, ping_pong
from zen.parallel.launch import worker_device


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_model(width: int, depth: int) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def measure_alpha_beta() -> tuple[float, float]:
    sizes = [2**k for k in range(8, 23, 2)]
    seconds = ping_pong(sizes, repeats=10, device=worker_device())
    return fit_alpha_beta([4 * s for s in sizes], seconds)


def time_steps(width: int, depth: int, batch: int, steps: int) -> dict[str, float]:
    """Median compute and all-reduce time per step on this rank."""
    device = worker_device()
    model = make_model(width, depth).to(device)
    x = torch.randn(batch, width, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    params = list(model.parameters())

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    compute, comm = [], []
    for i in range(steps + 2):  # two warm-up steps
        model.zero_grad()
        dist.barrier()
        sync()
        t0 = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        sync()
        t1 = time.perf_counter()
        dist.barrier()
        sync()
        t2 = time.perf_counter()
        bucket = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(bucket)
        bucket /= dist.get_world_size()
        sync()
        t3 = time.perf_counter()
        if i >= 2:
            compute.append(t1 - t0)
            comm.append(t3 - t2)
    return {
        "compute": statistics.median(compute),
        "comm": statistics.median(comm),
        "n_bytes": 4 * sum(p.numel() for p in params),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    parser.add_argument(
        "--procs",
        type=int,
        nargs="+",
        default=None,
        help="process counts (default: 1 2 4, or 1 … #GPUs)",
    )
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument(
        "--depth", type=int, default=8, help="hidden layers: parameters ≈ depth × width²"
    )
    parser.add_argument("--batch", type=int, default=64, help="examples per process per step")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if args.procs is None:
        args.procs = (
            [1, 2, 4]
            if args.backend == "gloo"
            else [p for p in (1, 2, 4, 8) if p <= torch.cuda.device_count()]
        )
    kw = {"backend": args.backend, "timeout": 300}
    if args.backend == "nccl":
        name = f"{torch.cuda.device_count()} × {torch.cuda.get_device_name(0)} (NCCL)"
    else:
        name = f"{cpu_name()}, {os.cpu_count()} cores (gloo, 1 thread per process)"

    if args.backend == "nccl" and torch.cuda.device_count() < 2:
        raise SystemExit("the NCCL benchmark needs at least 2 GPUs (one process per GPU)")
    alpha, beta = launch(measure_alpha_beta, 2, **kw)[0]
    n_params = sum(p.numel() for p in make_model(args.width, args.depth).parameters())
    print(f"device: {name}")
    print(
        f"model: {n_params / 1e6:.2f} M parameters "
        f"({4 * n_params / 1e6:.1f} MB of fp32 gradients), batch {args.batch} per process"
    )
    print(f"fitted α = {alpha * 1e6:.1f} µs, 1/β = {1 / beta / 1e9:.2f} GB/s\n")
    print(
        f"{'p':>3} {'compute ms':>11} {'all-reduce ms':>14} {'α–β ms':>8} "
        f"{'samples/s':>10} {'predicted':>10} {'speed-up':>9}"
    )
    base = None
    for p in args.procs:
        res = launch(time_steps, p, args.width, args.depth, args.batch, args.steps, **kw)
        compute = max(r["compute"] for r in res)  # the slowest rank sets the pace
        comm = max(r["comm"] for r in res)
        predicted_comm = all_reduce_time(res[0]["n_bytes"], p, alpha, beta, "ring")
        throughput = p * args.batch / (compute + comm)
        predicted = p * args.batch / (compute + predicted_comm)
        base = base or throughput
        print(
            f"{p:>3} {compute * 1e3:11.2f} {comm * 1e3:14.2f} {predicted_comm * 1e3:8.2f} "
            f"{throughput:10.0f} {predicted:10.0f} {throughput / base:8.2f}×"
        )


if __name__ == "__main__":
    main()
