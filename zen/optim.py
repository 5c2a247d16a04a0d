"""Optimisers from scratch: SGD with momentum, AdaGrad, RMSProp, Adam and AdamW.

Every optimiser turns the gradient ``g = ∇L(θ)`` of each parameter into a step, keeping a little
state per parameter (same shape as the parameter)::

    SGD       v ← μ v + g                      θ ← θ − η v        (Nesterov: θ ← θ − η (g + μ v))
    AdaGrad   s ← s + g²                       θ ← θ − η g / (√s + ε)
    RMSProp   s ← α s + (1 − α) g²             θ ← θ − η g / (√s + ε)
    Adam      m ← β₁ m + (1 − β₁) g            v ← β₂ v + (1 − β₂) g²
              θ ← θ − η · m̂ / (√v̂ + ε)         m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)
    AdamW     θ ← θ − η λ θ, then the Adam step without λ in g

Weight decay ``λ`` enters SGD, AdaGrad, RMSProp and Adam as an L2 term in the gradient,
``g ← g + λ θ`` ("coupled"): under Adam it is then divided by ``√v̂`` like the rest of the
gradient, so parameters with large gradients are barely decayed. AdamW (Loshchilov and Hutter,
2019) shrinks ``θ`` directly ("decoupled"), by the same fraction ``η λ`` for every parameter.

Each class subclasses ``torch.optim.Optimizer`` with ``torch.optim``'s argument names and
defaults, and takes the same steps as its ``torch.optim`` namesake (tested in float64 to
rounding over 100+ steps). :func:`cosine_schedule` is linear warm-up then cosine decay;
:func:`clip_grad_norm` rescales gradients to a global norm like ``clip_grad_norm_``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from zen import validate

__all__ = ["SGD", "AdaGrad", "RMSProp", "Adam", "AdamW", "cosine_schedule", "clip_grad_norm"]


def _check(lr: float, weight_decay: float, eps: float | None = None) -> None:
    validate.in_range(lr, "lr", 0.0, math.inf)
    validate.in_range(weight_decay, "weight_decay", 0.0, math.inf)
    if eps is not None:
        validate.positive(eps, "eps")


def _grads(group: dict) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """``(parameter, gradient)`` for the parameters of ``group`` that have a gradient."""
    return ((p, p.grad) for p in group["params"] if p.grad is not None)


class SGD(torch.optim.Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        _check(lr, weight_decay)
        validate.in_range(momentum, "momentum", 0.0, 1.0)
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and dampening = 0")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov)
        super().__init__(params, defaults | dict(weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            mu, lr = group["momentum"], group["lr"]
            for p, g in _grads(group):
                g = g + group["weight_decay"] * p  # coupled L2: g ← g + λθ
                if mu:
                    state = self.state[p]
                    if "v" not in state:
                        state["v"] = g.clone()  # the first step starts the velocity at g
                    else:
                        state["v"].mul_(mu).add_(g, alpha=1 - group["dampening"])
                    g = g + mu * state["v"] if group["nesterov"] else state["v"]
                p.add_(g, alpha=-lr)
        return loss


class AdaGrad(torch.optim.Optimizer):
    """AdaGrad (Duchi et al., 2011): per-coordinate rates shrinking with the summed g²."""

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
    ) -> None:
        _check(lr, weight_decay, eps)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, init=initial_accumulator_value)
        super().__init__(params, defaults | dict(weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            for p, g in _grads(group):
                state = self.state[p]
                if not state:
                    state["t"], state["s"] = 0, torch.full_like(p, group["init"])
                state["t"] += 1
                g = g + group["weight_decay"] * p
                state["s"].addcmul_(g, g)  # s ← s + g²
                lr = group["lr"] / (1 + (state["t"] - 1) * group["lr_decay"])
                p.addcdiv_(g, state["s"].sqrt() + group["eps"], value=-lr)
        return loss


class RMSProp(torch.optim.Optimizer):
    """RMSProp (Tieleman and Hinton, 2012): AdaGrad with a forgetting average of g²."""

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
    ) -> None:
        _check(lr, weight_decay, eps)
        validate.in_range(alpha, "alpha", 0.0, 1.0)
        defaults = dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered)
        super().__init__(params, defaults | dict(weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            a = group["alpha"]
            for p, g in _grads(group):
                state = self.state[p]
                if not state:
                    state.update(s=torch.zeros_like(p), m=torch.zeros_like(p))
                    state["buf"] = torch.zeros_like(p)
                g = g + group["weight_decay"] * p
                state["s"].mul_(a).addcmul_(g, g, value=1 - a)  # s ← α s + (1 − α) g²
                var = state["s"]
                if group["centered"]:  # subtract the squared mean gradient: a variance
                    state["m"].mul_(a).add_(g, alpha=1 - a)
                    var = var - state["m"] ** 2
                step = g / (var.sqrt() + group["eps"])
                if group["momentum"]:
                    step = state["buf"].mul_(group["momentum"]).add_(step)
                p.add_(step, alpha=-group["lr"])
        return loss


class Adam(torch.optim.Optimizer):
    """Adam (Kingma and Ba, 2015) with coupled L2 weight decay, as ``torch.optim.Adam``."""

    decoupled = False

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        _check(lr, weight_decay, eps)
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {beta!r}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else torch.enable_grad()(closure)()
        for group in self.param_groups:
            (b1, b2), lr, wd = group["betas"], group["lr"], group["weight_decay"]
            for p, g in _grads(group):
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t, m, v = state["t"], state["m"], state["v"]
                if self.decoupled:
                    p.mul_(1 - lr * wd)  # AdamW: shrink θ itself
                else:
                    g = g + wd * p  # Adam: L2 in the gradient, later divided by √v̂
                m.lerp_(g, 1 - b1)  # m ← β₁ m + (1 − β₁) g
                v.mul_(b2).addcmul_(g, g, value=1 - b2)  # v ← β₂ v + (1 − β₂) g²
                m_hat_scale = lr / (1 - b1**t)  # bias corrections for the zero start
                denom = v.sqrt() / math.sqrt(1 - b2**t) + group["eps"]  # √v̂ + ε
                p.addcdiv_(m, denom, value=-m_hat_scale)
        return loss


class AdamW(Adam):
    """AdamW (Loshchilov and Hutter, 2019): Adam with decoupled weight decay (default 0.01)."""

    decoupled = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)


def cosine_schedule(step: int, max_lr: float, min_lr: float, warmup: int, total: int) -> float:
    """The learning rate at ``step``: linear warm-up from 0, then half a cosine down to ``min_lr``.

    ``0`` at step 0, ``max_lr`` at ``step = warmup``, ``min_lr`` from ``step = total`` on::

        lr(s) = max_lr · s / warmup                                     s < warmup
              = min_lr + ½ (max_lr − min_lr)(1 + cos(π (s − warmup) / (total − warmup)))
              = min_lr                                                  s ≥ total
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    if not 0 <= min_lr <= max_lr:
        raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if not 0 <= warmup < total:
        raise ValueError(f"need 0 <= warmup < total, got warmup={warmup}, total={total}")
    if step < warmup:
        return max_lr * step / warmup
    if step >= total:
        return min_lr
    u = (step - warmup) / (total - warmup)  # progress through the decay, 0 → 1
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * u))


@torch.no_grad()
def clip_grad_norm(params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale all gradients by ``min(1, max_norm / ‖g‖)``, ``‖g‖`` their joint L2 norm; return it.

    The gradient's direction is kept and only its length is capped, as
    ``torch.nn.utils.clip_grad_norm_`` does (which adds ``1e-6`` to the norm in the ratio).
    """
    validate.positive(max_norm, "max_norm")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale)
    return norm
