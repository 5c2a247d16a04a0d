"""Measuring the memory one rank holds, on any device: bytes of live tensor storages.

On a GPU ``torch.cuda.max_memory_allocated`` reports the allocator's peak; on a CPU there is
no such counter. :class:`MemoryMeter` measures instead what a ZeRO stage is about: the bytes of
the *storages* behind the tensors a rank holds, by kind (``params``, ``grads``, ``optim``),
sampled at every point where they change — before and after every module's forward, at
every parameter's gradient (before a ZeRO hook frees it) and after every optimizer step. A
storage shared by several views (a flat bucket) counts once; a freed one (resized to 0 bytes,
or garbage) counts nothing. What it does not see: activations, temporaries inside an op, and
allocator fragmentation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

KINDS = ("params", "grads", "optim")


class MemoryMeter:
    """Peak bytes per kind of the tensors returned by ``source()``.

    ``source`` returns ``{kind: [tensors]}`` (each optimizer in :mod:`zen.parallel` has a
    ``tensors`` method). Call :meth:`watch` on the model *before* the optimizer registers its
    hooks, so the meter sees every gradient before it is freed.
    """

    def __init__(self, source: Callable[[], dict[str, list[torch.Tensor]]]) -> None:
        self.source = source
        self.peak = dict.fromkeys(KINDS, 0)
        self.peak_total = 0
        self.samples = 0

    def current(self) -> dict[str, int]:
        """Bytes held now, per kind (each storage counted once, in the first kind listing it)."""
        seen: set[int] = set()
        out = dict.fromkeys(KINDS, 0)
        for kind, tensors in self.source().items():
            if kind not in out:
                raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
            for t in tensors:
                if t is None:
                    continue
                storage = t.untyped_storage()
                if storage.nbytes() == 0 or storage.data_ptr() in seen:
                    continue
                seen.add(storage.data_ptr())
                out[kind] += storage.nbytes()
        return out

    def sample(self, *_: object) -> None:
        """Record the bytes held now (usable as any hook: arguments are ignored)."""
        now = self.current()
        self.samples += 1
        for kind, n in now.items():
            self.peak[kind] = max(self.peak[kind], n)
        self.peak_total = max(self.peak_total, sum(now.values()))

    def watch(self, model: nn.Module) -> MemoryMeter:
        """Sample around every module's forward and at every parameter's finished gradient."""
        for module in model.modules():
            module.register_forward_pre_hook(self.sample)
            module.register_forward_hook(self.sample)
        for p in model.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(self.sample)
        return self
