"""ZeRO stage 3 from scratch: parameters sharded too, gathered one layer at a time.

Each *unit* (a layer) is one bucket of :class:`~zen.parallel.zero.Buckets`. Between uses a
rank keeps only its piece of the unit's weights (``Ψ_unit / p`` elements); the unit's flat
buffer, of which its parameters are views, has its storage freed (resized to 0 bytes)::

    forward   pre-hook: all-gather unit ─► run it ─► post-hook: free the gathered weights
    backward  hook on the unit's output gradient: all-gather the unit again
              ─► its gradients arrive ─► reduce-scatter (stage 2) ─► free the weights again
    step      Adam on the owned pieces, which *are* the weights: nothing to all-gather

A rank therefore holds ``Ψ / p`` weights plus the one or two units in use, at the price of one
more all-gather of the weights per step than stages 0–2 (ZeRO's 1.5× traffic).
``torch.distributed.fsdp.fully_shard`` is the production version of the same idea.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from zen.parallel.zero import Buckets, adam_update
from zen.parallel.zero_grads import Zero2Adam


class Zero3Adam(Zero2Adam):
    """Adam with optimizer state, gradients and parameters sharded (ZeRO stage 3).

    ``units`` are the modules gathered as a whole (one layer each); together they must hold
    every trainable parameter of ``model``, and each must run once per forward. Equal to
    ``torch.optim.Adam`` on the global batch; :meth:`full_parameters` returns the weights.
    """

    def __init__(
        self,
        model: nn.Module,
        units: list[nn.Module],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not dist.is_initialized():
            raise RuntimeError("Zero3Adam needs an initialised process group")
        groups = [[p for p in u.parameters() if p.requires_grad] for u in units]
        covered = {id(p) for g in groups for p in g}
        missing = [
            n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered
        ]
        if missing or len(covered) != sum(len(g) for g in groups):
            raise ValueError(
                "units must hold every trainable parameter exactly once; "
                f"not in any unit: {missing}"
            )
        buckets = Buckets(groups, dist.get_world_size(), dist.get_rank())
        super().__init__([], lr, betas, eps, buckets=buckets)
        # the weights a rank keeps: its piece of every unit
        self.shard = [flat[buckets.piece(b)].clone() for b, flat in enumerate(buckets.flat)]
        for b, unit in enumerate(units):
            self._free(b)
            unit.register_forward_pre_hook(lambda _m, _i, b=b: self._gather(b))
            unit.register_forward_hook(lambda _m, _i, out, b=b: self._after_forward(b, out))

    def _gathered(self, b: int) -> bool:
        return self.buckets.flat[b].untyped_storage().nbytes() > 0

    @torch.no_grad()
    def _gather(self, b: int) -> None:
        flat = self.buckets.flat[b]
        if not self._gathered(b):
            flat.untyped_storage().resize_(flat.numel() * flat.element_size())
            dist.all_gather_single(flat, self.shard[b])  # the unit's weights, whole

    def _free(self, b: int) -> None:
        self.buckets.flat[b].untyped_storage().resize_(0)  # the views stay, their bytes go

    def _after_forward(self, b: int, out: object) -> None:
        if isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(lambda grad: self._gather(b))  # gather again for backward
        self._free(b)

    def _reduce_bucket(self, b: int) -> None:
        super()._reduce_bucket(b)
        self._free(b)  # the unit's backward is done

    def tensors(self) -> dict[str, list[torch.Tensor]]:
        held = super().tensors()
        held["params"] = held["params"] + self.shard
        return held

    @torch.no_grad()
    def step(self) -> None:
        self._check_complete()
        self.t += 1
        for b, shard in enumerate(self.shard):  # the pieces are the weights: no all-gather
            adam_update(shard, self.grad[b], self.m[b], self.v[b], self.t, *self.hyper)

    @torch.no_grad()
    def full_parameters(self) -> list[torch.Tensor]:
        """Copies of the whole weights, in the order of ``model.parameters()`` per unit."""
        out = []
        for b, group in enumerate(self.buckets.groups):
            self._gather(b)
            out += [p.detach().clone() for p in group]
            self._free(b)
        return out
