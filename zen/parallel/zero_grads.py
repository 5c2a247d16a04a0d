"""ZeRO stage 2 from scratch: gradients reduce-scattered in buckets *during* backward.

Stage 1 still lets backward fill every ``.grad`` and all-reduces all of it, so each rank holds
the full gradient (``Ψ`` elements) at its peak. Stage 2 never does. A hook on every parameter
fires as soon as its gradient is final (``register_post_accumulate_grad_hook``):

1. the gradient is copied into its bucket's buffer and ``p.grad`` is freed;
2. when the bucket's last gradient has arrived, the buffer is *reduce-scattered*: rank ``r``
   receives the sum of piece ``r`` only (``size / p`` elements), and the buffer is freed.

So a rank holds its pieces (``Ψ / p``), at most one bucket being filled and one gradient in
flight::

    backward  ─► grad(p₉) grad(p₈) ─► [bucket 0 full] ─► reduce-scatter ─► keep piece r, free
              ─► grad(p₇) ...      ─► [bucket 1 full] ─► reduce-scatter ─► keep piece r, free

    peak gradient bytes ≈ Ψ/p + one bucket + one parameter's gradient

The step is stage 1's: Adam on the owned pieces, all-gather of the updated pieces. Buckets
are filled in reverse parameter order, the order in which backward produces gradients.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import nn

from zen.parallel.zero import Buckets, adam_update


class Zero2Adam:
    """Adam with optimizer state *and* gradients sharded (ZeRO stage 2); hooks do the work.

    Create it before the first backward; call ``zero_grad``, ``loss.backward()``, ``step``
    on every rank. Equal to ``torch.optim.Adam`` on the global batch (gradients are averaged
    over ranks). Every parameter must receive a gradient in every backward.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        bucket_numel: int = 2**16,
        buckets: Buckets | None = None,
    ) -> None:
        if not dist.is_initialized():
            raise RuntimeError(f"{type(self).__name__} needs an initialised process group")
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        world, rank = dist.get_world_size(), dist.get_rank()
        self.buckets = buckets or Buckets.by_size(params, bucket_numel, world, rank)
        n = len(self.buckets.flat)
        device = self.buckets.flat[0].device
        sizes = [self.buckets.piece_numel(b) for b in range(n)]
        self.m = [torch.zeros(k, dtype=torch.float32, device=device) for k in sizes]
        self.v = [torch.zeros_like(m) for m in self.m]
        self.filling: list[torch.Tensor | None] = [None] * n  # full buckets being filled
        self.arrived = [0] * n
        self.grad: list[torch.Tensor | None] = [None] * n  # this rank's reduced pieces
        for p in self.buckets.slot:
            p.register_post_accumulate_grad_hook(self._on_gradient)

    def _on_gradient(self, p: nn.Parameter) -> None:
        b, at = self.buckets.slot[p]
        if self.filling[b] is None:
            flat = self.buckets.flat[b]
            self.filling[b] = torch.zeros(flat.numel(), dtype=flat.dtype, device=flat.device)
        self.filling[b][at : at + p.numel()].copy_(p.grad.reshape(-1))
        p.grad = None  # this rank will keep only its piece of this gradient
        self.arrived[b] += 1
        if self.arrived[b] == len(self.buckets.groups[b]):
            self._reduce_bucket(b)

    @torch.no_grad()
    def _reduce_bucket(self, b: int) -> None:
        full, self.filling[b], self.arrived[b] = self.filling[b], None, 0
        piece = torch.empty(self.buckets.piece_numel(b), dtype=full.dtype, device=full.device)
        dist.reduce_scatter_single(piece, full)  # rank r receives the sum of piece r
        piece /= self.buckets.world
        if self.grad[b] is None:
            self.grad[b] = piece
        else:  # gradient accumulation over several backward passes
            self.grad[b] += piece

    def zero_grad(self) -> None:
        self.grad = [None] * len(self.grad)

    def tensors(self) -> dict[str, list[torch.Tensor]]:
        params = list(self.buckets.slot)
        grads = [p.grad for p in params] + self.filling + self.grad
        return {"params": params, "grads": grads, "optim": self.m + self.v}

    def _check_complete(self) -> None:
        missing = [b for b, g in enumerate(self.grad) if g is None or self.arrived[b]]
        if missing:
            raise RuntimeError(
                f"buckets {missing} did not receive every gradient: call loss.backward() "
                "before step, and give every parameter a gradient"
            )

    @torch.no_grad()
    def step(self) -> None:
        self._check_complete()
        self.t += 1
        for b, flat in enumerate(self.buckets.flat):
            part = self.buckets.piece(b)
            adam_update(flat[part], self.grad[b], self.m[b], self.v[b], self.t, *self.hyper)
            dist.all_gather_single(flat, flat[part])  # every rank gets every updated piece

    @property
    def hyper(self) -> tuple[float, tuple[float, float], float]:
        """Adam's ``lr, betas, eps``."""
        return self.lr, self.betas, self.eps
