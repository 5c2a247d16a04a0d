"""Data parallelism from scratch: every rank holds the whole model and a slice of the batch.

One step on ``p`` ranks with a global batch of ``B`` examples:

1. rank ``r`` takes its ``B / p`` examples (:func:`shard`) and runs forward and backward;
2. the gradients are averaged over ranks with one all-reduce (:func:`all_reduce_gradients`);
3. every rank applies the same optimizer step to the same parameters.

Because the loss is a mean, the average of the ``p`` local gradients *is* the gradient of the
global batch, so (with replicas that start equal, :func:`broadcast_parameters`) the run is the
same as one process training on the whole batch — up to floating-point summation order.
``torch.nn.parallel.DistributedDataParallel`` does the same, overlapping the all-reduce with
backward by bucketing gradients as they become ready.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from zen import validate
from zen.parallel.collectives import Traffic, ring_all_reduce

ALGORITHMS = ("builtin", "ring")


def shard(x: torch.Tensor, rank: int, world_size: int, dim: int = 0) -> torch.Tensor:
    """Rank ``rank``'s contiguous slice of ``x`` along ``dim``.

    Its size along ``dim`` is ``x.shape[dim] / world_size``.
    """
    validate.tensor(x, "x")
    validate.positive_int(world_size, "world_size")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size - 1}], got {rank}")
    if x.shape[dim] % world_size:
        raise ValueError(
            f"world_size {world_size} must divide the size of x along dim {dim}, "
            f"got shape {tuple(x.shape)}"
        )
    return x.chunk(world_size, dim=dim)[rank]


@torch.no_grad()
def broadcast_parameters(model: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank, so replicas start equal."""
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src)


@torch.no_grad()
def all_reduce_gradients(
    model: nn.Module, algorithm: str = "builtin", traffic: Traffic | None = None
) -> None:
    """Replace every ``p.grad`` by its average over ranks, with one all-reduce of a flat bucket.

    ``algorithm="builtin"`` uses ``dist.all_reduce``; ``"ring"`` uses the from-scratch
    :func:`zen.parallel.collectives.ring_all_reduce`.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    missing = [i for i, p in enumerate(params) if p.grad is None]
    if missing:
        raise RuntimeError(
            f"parameters {missing} have no gradient: "
            "call loss.backward() before all_reduce_gradients"
        )
    bucket = parameters_to_vector(
        p.grad for p in params
    )  # (total_params,) one message, not one per tensor
    if algorithm == "ring":
        ring_all_reduce(bucket, traffic)
    else:
        dist.all_reduce(bucket)
    bucket /= dist.get_world_size()
    vector_to_parameters(
        bucket, (p.grad for p in params)
    )  # each gradient becomes its slice of the bucket


def data_parallel_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    algorithm: str = "builtin",
) -> float:
    """One data-parallel step on this rank's ``(x, y)``; returns the global mean loss."""
    optimizer.zero_grad(set_to_none=False)
    loss = loss_fn(model(x), y)
    loss.backward()
    all_reduce_gradients(model, algorithm)
    optimizer.step()
    global_loss = loss.detach().clone()
    dist.all_reduce(global_loss)
    return global_loss.item() / dist.get_world_size()
