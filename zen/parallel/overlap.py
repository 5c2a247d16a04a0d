"""Overlapping communication with computation: a bucketed all-reduce *during* backward.

:func:`~zen.parallel.data_parallel.all_reduce_gradients` waits for the whole backward pass,
then all-reduces every gradient: the network idles while the processor computes, and the
processor idles while the network sends. Backward produces gradients from the last layer to
the first, so the last layers' gradients are final long before backward ends.
:class:`OverlappedAllReduce` groups the parameters into buckets in that order and launches an
asynchronous all-reduce (``async_op=True``) of each bucket from a hook the moment its last
gradient is final; :meth:`~OverlappedAllReduce.finish` waits for the ones still in flight::

    compute  │ backward L │ backward L-1 │ ... │ backward 1 │
    network               │ all-reduce bucket 0 │ all-reduce bucket 1 │ ... │ wait │

This is what ``DistributedDataParallel`` does (Li et al., 2020). The arithmetic is that of
:func:`all_reduce_gradients`: every gradient becomes its average over ranks.
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist
from torch import nn

from zen.parallel.zero import Buckets


class OverlappedAllReduce:
    """Average gradients over ranks with per-bucket asynchronous all-reduces launched in backward.

    Gradients accumulate in flat buffers (``p.grad`` are views; call :meth:`zero_grad` before
    each backward). ``launched`` records, per bucket and step, the seconds since
    :meth:`zero_grad` at which its all-reduce started; ``backward_end`` when the last gradient
    was final.
    """

    def __init__(self, model: nn.Module, bucket_numel: int = 2**14) -> None:
        if not dist.is_initialized():
            raise RuntimeError("OverlappedAllReduce needs an initialised process group")
        world, rank = dist.get_world_size(), dist.get_rank()
        self.buckets = Buckets.by_size(model.parameters(), bucket_numel, world, rank)
        self.grad = [torch.zeros_like(f) for f in self.buckets.flat]
        self.arrived = [0] * len(self.grad)
        self.work: list = []
        self.launched: list[float] = []
        self.backward_end = 0.0
        for p in self.buckets.slot:
            p.register_post_accumulate_grad_hook(self._on_gradient)
        self.zero_grad()

    def zero_grad(self) -> None:
        for g in self.grad:
            g.zero_()
        for p, (b, at) in self.buckets.slot.items():
            p.grad = self.grad[b][at : at + p.numel()].view_as(p)
        self.arrived = [0] * len(self.grad)
        self.launched, self.work = [], []
        self.start = time.perf_counter()

    def _on_gradient(self, p: nn.Parameter) -> None:
        b, _ = self.buckets.slot[p]
        self.arrived[b] += 1
        self.backward_end = time.perf_counter() - self.start
        if self.arrived[b] == len(self.buckets.groups[b]):  # bucket complete: send it now
            self.launched.append(self.backward_end)
            self.work.append(dist.all_reduce(self.grad[b], async_op=True))

    def finish(self) -> None:
        """Wait for every bucket's all-reduce and divide by the world size."""
        if len(self.work) != len(self.grad):
            raise RuntimeError(
                f"{len(self.work)} of {len(self.grad)} buckets were sent: call loss.backward() "
                "before finish, and give every parameter a gradient"
            )
        for w in self.work:
            w.wait()
        for g in self.grad:
            g /= self.buckets.world
