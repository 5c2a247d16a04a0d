"""Memory per device under ZeRO, and a sharded Adam built from the ring's two phases.

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

Activations, buffers and fragmentation come on top. :class:`ShardedAdam` is ZeRO stage 1/2
from scratch: gradients are reduce-scattered (stage 2) or all-reduced (stage 1) with the ring
of :mod:`zen.parallel.collectives`, each rank runs Adam on its shard only, and the updated
shards are all-gathered — the same arithmetic as ``torch.optim.Adam`` on one device.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from zen import validate
from zen.parallel.collectives import ring_all_gather, ring_all_reduce, ring_reduce_scatter

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
    stage = _check_stage(stage)
    n = validate.positive_int(world_size, "world_size")
    if not num_params > 0:
        raise ValueError(f"num_params must be positive, got {num_params!r}")
    if min(optimizer_bytes, param_bytes, grad_bytes) < 0:
        raise ValueError("bytes per parameter must be non-negative")
    params = param_bytes * num_params / (n if stage >= 3 else 1)
    grads = grad_bytes * num_params / (n if stage >= 2 else 1)
    optim = optimizer_bytes * num_params / (n if stage >= 1 else 1)
    return params + grads + optim


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


class ShardedAdam:
    """Adam whose state lives in shards across ranks (ZeRO stage 1 or 2).

    Equal to ``torch.optim.Adam``. Call after ``loss.backward()`` on every rank; gradients are
    averaged over ranks (this is a data-parallel optimizer: do not all-reduce them yourself).
    ``state_numel()`` is what this rank stores: ``2 ×`` its shard instead of ``2 ×`` the model.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        stage: int = 2,
    ) -> None:
        if _check_stage(stage) not in (1, 2):
            raise ValueError(
                f"ShardedAdam implements ZeRO stages 1 and 2, got {stage}; "
                "use fully_shard for stage 3"
            )
        if not dist.is_initialized():
            raise RuntimeError("ShardedAdam needs an initialised process group")
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.betas, self.eps, self.stage = lr, betas, eps, stage
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        total = sum(p.numel() for p in self.params)
        # after reduce-scatter on the ring, rank r owns chunk (r + 1) % p
        self.owned = (self.rank + 1) % self.world
        # torch.tensor_split's chunk sizes: the first (total % p) chunks get one extra element
        base, extra = divmod(total, self.world)
        self.lo = self.owned * base + min(self.owned, extra)
        self.hi = self.lo + base + (self.owned < extra)
        self.master = (
            parameters_to_vector(p.detach() for p in self.params)[self.lo : self.hi].float().clone()
        )
        self.m = torch.zeros_like(self.master)  # (shard,) first moment
        self.v = torch.zeros_like(self.master)  # (shard,) second moment
        self.t = 0

    def state_numel(self) -> int:
        """Optimizer-state elements held by this rank (momentum + variance of its shard)."""
        return self.m.numel() + self.v.numel()

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        grad = parameters_to_vector(p.grad for p in self.params).float()  # (total,)
        chunks = list(torch.tensor_split(grad, self.world))
        if self.stage == 1:
            ring_all_reduce(
                grad
            )  # every rank gets the full summed gradient, keeps its shard's part
        else:
            ring_reduce_scatter(chunks)  # only the owned chunk is summed: gradients are sharded too
        g = chunks[self.owned] / self.world
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        self.master -= self.lr * m_hat / (v_hat.sqrt() + self.eps)
        flat = torch.empty_like(grad)
        weights = list(torch.tensor_split(flat, self.world))
        weights[self.owned].copy_(self.master)
        ring_all_gather(weights)  # every rank receives every updated shard
        vector_to_parameters(flat.to(self.params[0].dtype), self.params)
