"""Data-parallel training of a digits classifier, to be started by ``torchrun``.

One node, two processes on CPU (gloo) or two GPUs (NCCL, chosen automatically)::

    torchrun --standalone --nproc-per-node=2 -m zen.parallel.train --strategy ddp --check

Several nodes (run on every node, ``--node-rank`` 0 … N-1; ``HOST`` is node 0's address)::

    torchrun --nnodes=2 --node-rank=0 --nproc-per-node=8 \\
        --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 -m zen.parallel.train --strategy fsdp

``--strategy`` is ``scratch`` (our gradient all-reduce), ``ddp``
(``DistributedDataParallel``) or ``fsdp`` (``fully_shard``, ZeRO-3). ``--check`` retrains the
same model in one process on rank 0 on the full global batches and asserts the parameters
match (``scratch`` and ``ddp``). Rank 0 prints the loss, the throughput and the accuracy.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zen.data import load_digits
from zen.parallel.data_parallel import all_reduce_gradients, broadcast_parameters, shard
from zen.parallel.launch import init_from_env

STRATEGIES = ("scratch", "ddp", "fsdp")


def make_model(hidden: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def global_batches(n: int, batch: int, steps: int) -> list[torch.Tensor]:
    """The same index batches on every rank (one shared seed)."""
    g = torch.Generator().manual_seed(1)
    out: list[torch.Tensor] = []
    while len(out) < steps:
        out += list(torch.randperm(n, generator=g)[: n - n % batch].split(batch))
    return out[:steps]


def train(
    strategy: str, steps: int, batch: int, hidden: int, lr: float, device: torch.device
) -> tuple[nn.Module, list[float], float]:
    rank, world = dist.get_rank(), dist.get_world_size()
    if batch % world:
        raise ValueError(
            f"the global batch ({batch}) must be divisible by the number of processes ({world})"
        )
    data = load_digits().train
    model = make_model(hidden).to(device)
    if strategy == "scratch":
        broadcast_parameters(model)
        net = model
    elif strategy == "ddp":
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    else:
        from torch.distributed.fsdp import fully_shard

        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer)
        net = fully_shard(model)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    losses = []
    start = time.perf_counter()
    for idx in global_batches(len(data), batch, steps):
        x, y = (
            shard(data.x[idx], rank, world).to(device),
            shard(data.y[idx], rank, world).to(device),
        )
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        if strategy == "scratch":
            all_reduce_gradients(model)
        opt.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return model, losses, steps * batch / seconds


def single_process(steps: int, batch: int, hidden: int, lr: float) -> nn.Module:
    data = load_digits().train
    model = make_model(hidden)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for idx in global_batches(len(data), batch, steps):
        opt.zero_grad()
        F.cross_entropy(model(data.x[idx]), data.y[idx]).backward()
        opt.step()
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--strategy", choices=STRATEGIES, default="ddp")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--batch", type=int, default=64, help="global batch size (all ranks together)"
    )
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument(
        "--backend",
        choices=("gloo", "nccl"),
        default=None,
        help="default: nccl with GPUs, else gloo",
    )
    parser.add_argument("--check", action="store_true", help="compare with one process on rank 0")
    args = parser.parse_args(argv)
    rank, world, device = init_from_env(args.backend)
    try:
        model, losses, throughput = train(
            args.strategy, args.steps, args.batch, args.hidden, args.lr, device
        )
        if args.strategy == "fsdp":
            from torch.distributed.tensor import DTensor

            full = [p.full_tensor() if isinstance(p, DTensor) else p for p in model.parameters()]
        else:
            full = list(model.parameters())
        if rank == 0:
            data = load_digits().test
            with torch.no_grad():
                flat = torch.cat([p.detach().reshape(-1).cpu() for p in full])
                reference = make_model(args.hidden)
                torch.nn.utils.vector_to_parameters(flat, reference.parameters())
                acc = (reference(data.x).argmax(-1) == data.y).float().mean().item()
            print(
                f"{args.strategy} on {world} process(es), {device.type}: "
                f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
                f"test accuracy {acc:.3f}, {throughput:,.0f} samples/s"
            )
            if args.check:
                single = single_process(args.steps, args.batch, args.hidden, args.lr)
                diff = max(
                    (a.detach().cpu() - b).abs().max().item()
                    for a, b in zip(full, single.parameters())
                )
                print(f"max |parameter difference| vs one process: {diff:.2e}")
                assert diff < 1e-3, f"distributed run differs from one process by {diff}"
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
