"""Memory per device under ZeRO, flat parameter buckets, and ZeRO stages 0 and 1 from scratch.

Mixed-precision Adam keeps, per parameter: an fp16/bf16 weight (2 bytes), an fp16/bf16
gradient (2 bytes) and ``K = 12`` bytes of fp32 optimizer state (master weight, momentum,
variance: 4 + 4 + 4). With ``Ψ`` parameters on ``N_d`` data-parallel devices, ZeRO
(Rajbhandari et al., 2020, Table 1) partitions progressively more of it:

=====  ==========================  =====================================
stage  partitioned                 bytes per device
=====  ==========================  =====================================
0      nothing (plain DP)          ``(2 + 2 + K) Ψ``
1      optimizer states            ``2Ψ + 2Ψ + KΨ / N_d``
2      + gradients                 ``2Ψ + (2 + K) Ψ / N_d``
3      + parameters                ``(2 + 2 + K) Ψ / N_d``
=====  ==========================  =====================================

Activations, buffers and fragmentation come on top. The from-scratch stages share one layout,
:class:`Buckets`: the parameters are grouped into *buckets* (in reverse order, the order in
which backward produces their gradients), each padded to a multiple of ``p`` and cut into ``p``
equal pieces; rank ``r`` owns piece ``r`` of every bucket::

    bucket 0  [ r0 | r1 | r2 | r3 ]   bucket 1  [ r0 | r1 | r2 | r3 ]   ...
              one flat buffer per bucket; every parameter is a view into its bucket

:class:`ZeroAdam` is stage 0 (all-reduce, full Adam) and stage 1 (all-reduce, Adam on the
owned pieces only, all-gather of the updated pieces). Stage 2 is
:mod:`zen.parallel.zero_grads`, stage 3 :mod:`zen.parallel.zero_params`.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from zen import validate

STAGES = (0, 1, 2, 3)


def _check_stage(stage: object) -> int:
    if isinstance(stage, bool) or stage not in STAGES:
        raise ValueError(f"ZeRO stage must be one of {STAGES}, got {stage!r}")
    return int(stage)


def zero_memory_per_device(
    num_params: float,
    world_size: int,
    stage: int,
    optimizer_bytes: float = 12,
    param_bytes: float = 2,
    grad_bytes: float = 2,
) -> float:
    """Bytes of model states (weights, gradients, optimizer state) per device under ZeRO ``stage``.

    ``optimizer_bytes`` is ZeRO's ``K`` (12 for mixed-precision Adam); ``param_bytes`` and
    ``grad_bytes`` are 2 for fp16/bf16 training.
    """
    return sum(
        zero_memory_breakdown(
            num_params, world_size, stage, optimizer_bytes, param_bytes, grad_bytes
        ).values()
    )


def zero_memory_breakdown(
    num_params: float,
    world_size: int,
    stage: int,
    optimizer_bytes: float = 12,
    param_bytes: float = 2,
    grad_bytes: float = 2,
) -> dict[str, float]:
    """:func:`zero_memory_per_device` split into ``params``, ``grads`` and ``optim`` bytes."""
    stage = _check_stage(stage)
    n = validate.positive_int(world_size, "world_size")
    if not num_params > 0:
        raise ValueError(f"num_params must be positive, got {num_params!r}")
    if min(optimizer_bytes, param_bytes, grad_bytes) < 0:
        raise ValueError("bytes per parameter must be non-negative")
    return {
        "params": param_bytes * num_params / (n if stage >= 3 else 1),
        "grads": grad_bytes * num_params / (n if stage >= 2 else 1),
        "optim": optimizer_bytes * num_params / (n if stage >= 1 else 1),
    }


def zero_communication_per_step(
    num_params: float, world_size: int, stage: int, param_bytes: float = 2
) -> float:
    """Bytes each device sends per training step (bandwidth-optimal ring collectives).

    Stages 0–2 move ``2Ψ`` elements' worth (an all-reduce, or a reduce-scatter plus an
    all-gather of the updated weights); stage 3 adds one more all-gather of the weights for the
    backward pass: ``3Ψ`` — ZeRO's 1.5× (paper §7.2). Each ``Ψ`` costs ``(N_d-1)/N_d · Ψ`` sends.
    """
    stage = _check_stage(stage)
    n = validate.positive_int(world_size, "world_size")
    volumes = 3 if stage == 3 else 2
    return volumes * (n - 1) / n * num_params * param_bytes


def adam_update(
    w: torch.Tensor,
    g: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    t: int,
    lr: float,
    betas: tuple[float, float],
    eps: float,
) -> None:
    """One Adam step on flat tensors, in place: ``w``, ``m``, ``v`` updated from gradient ``g``.

    The same arithmetic as ``torch.optim.Adam`` (``t`` counts steps from 1).
    """
    b1, b2 = betas
    m.mul_(b1).add_(g, alpha=1 - b1)
    v.mul_(b2).addcmul_(g, g, value=1 - b2)
    denom = (v / (1 - b2**t)).sqrt_().add_(eps)
    w.addcdiv_(m, denom, value=-lr / (1 - b1**t))


class Buckets:
    """Parameters moved into flat buckets, each padded to a multiple of ``world``.

    ``groups`` lists the parameters of each bucket. Afterwards every parameter is a view into
    its bucket's 1-D buffer ``self.flat[b]``; ``piece(b)`` is the slice of it that this rank
    owns, ``len(self.flat[b]) / world`` elements.
    """

    def __init__(self, groups: list[list[nn.Parameter]], world: int, rank: int) -> None:
        if not groups or any(not g for g in groups):
            raise ValueError("every bucket needs at least one parameter")
        self.groups, self.world, self.rank = groups, world, rank
        self.flat: list[torch.Tensor] = []
        self.slot: dict[nn.Parameter, tuple[int, int]] = {}  # bucket index, offset in bucket
        with torch.no_grad():
            for b, g in enumerate(groups):
                n = sum(p.numel() for p in g)
                flat = torch.zeros(-(-n // world) * world, dtype=g[0].dtype, device=g[0].device)
                at = 0
                for p in g:
                    self.slot[p] = (b, at)
                    flat[at : at + p.numel()].copy_(p.reshape(-1))
                    p.data = flat[at : at + p.numel()].view_as(p)  # p now lives in the bucket
                    at += p.numel()
                self.flat.append(flat)

    @classmethod
    def by_size(
        cls, params: Iterable[nn.Parameter], bucket_numel: int, world: int, rank: int
    ) -> Buckets:
        """Group ``params`` in reverse order into buckets of at least ``bucket_numel`` elements."""
        validate.positive_int(bucket_numel, "bucket_numel")
        groups: list[list[nn.Parameter]] = [[]]
        for p in reversed([p for p in params if p.requires_grad]):
            if sum(q.numel() for q in groups[-1]) >= bucket_numel:
                groups.append([])
            groups[-1].append(p)
        if not groups[0]:
            raise ValueError("no trainable parameters")
        return cls(groups, world, rank)

    def piece(self, b: int) -> slice:
        """This rank's slice of bucket ``b``."""
        size = self.flat[b].numel() // self.world
        return slice(self.rank * size, (self.rank + 1) * size)

    def piece_numel(self, b: int) -> int:
        return self.flat[b].numel() // self.world


class ZeroAdam:
    """Data-parallel Adam, ZeRO stage 0 (replicated state) or 1 (optimizer state sharded).

    Gradients accumulate in flat buffers (every ``p.grad`` a view) that are all-reduced and
    averaged. Stage 0 runs Adam on everything; stage 1 on this rank's pieces only, then
    all-gathers the updated pieces. Equal to ``torch.optim.Adam`` on the global batch.
    ``tensors()`` lists what the rank holds, by kind, for :class:`~zen.parallel.memory.MemoryMeter`.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        stage: int = 1,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        bucket_numel: int = 2**20,
    ) -> None:
        if _check_stage(stage) not in (0, 1):
            raise ValueError(
                f"ZeroAdam implements stages 0 and 1, got {stage}: "
                "use zero_grads.Zero2Adam or zero_params.Zero3Adam"
            )
        if not dist.is_initialized():
            raise RuntimeError("ZeroAdam needs an initialised process group")
        self.stage, self.lr, self.betas, self.eps, self.t = stage, lr, betas, eps, 0
        self.buckets = Buckets.by_size(params, bucket_numel, dist.get_world_size(), dist.get_rank())
        self.grad = [torch.zeros_like(f) for f in self.buckets.flat]
        sizes = [
            self.buckets.piece_numel(b) if stage == 1 else f.numel()
            for b, f in enumerate(self.buckets.flat)
        ]
        self.m = [torch.zeros(n, dtype=torch.float32, device=self.grad[0].device) for n in sizes]
        self.v = [torch.zeros_like(m) for m in self.m]
        self.zero_grad()

    def zero_grad(self) -> None:
        for g in self.grad:
            g.zero_()
        for p, (b, at) in self.buckets.slot.items():
            p.grad = self.grad[b][at : at + p.numel()].view_as(p)

    def tensors(self) -> dict[str, list[torch.Tensor]]:
        params = list(self.buckets.slot)
        return {"params": params, "grads": list(self.grad), "optim": self.m + self.v}

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        args = (self.t, self.lr, self.betas, self.eps)
        for b, (flat, grad) in enumerate(zip(self.buckets.flat, self.grad)):
            dist.all_reduce(grad)  # every rank now holds the summed gradient
            grad /= self.buckets.world
            part = slice(None) if self.stage == 0 else self.buckets.piece(b)
            adam_update(flat[part], grad[part], self.m[b], self.v[b], *args)
            if self.stage == 1:
                dist.all_gather_single(flat, flat[part])  # every rank gets every updated piece
