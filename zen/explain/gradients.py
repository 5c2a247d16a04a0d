"""Gradient attributions: saliency, gradient × input, integrated gradients, SmoothGrad.

Each explains ``F(x) = model(x)[target]`` (:func:`output`); integrated gradients integrates
∂F/∂x along the straight path from a baseline with the quadrature rule of :func:`riemann`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from zen import validate

Model = Callable[[torch.Tensor], torch.Tensor]
RIEMANN = ("left", "right", "middle", "trapezoid")


# ------------------------------------------------------------------------------ the scalar F
def _check_input(x: torch.Tensor, name: str = "x") -> None:
    validate.ndim_at_least(x, 2, name, "(batch, *features)")
    validate.floating(x, name)


def _baseline(x: torch.Tensor, baseline: torch.Tensor | float | None) -> torch.Tensor:
    """The reference input x': zeros by default, a number, one example (broadcast) or one a row."""
    if baseline is None or isinstance(baseline, (int, float)):
        return torch.full_like(x, 0.0 if baseline is None else float(baseline))
    validate.tensor(baseline, "baseline")
    if baseline.shape == x.shape[1:]:
        baseline = baseline.expand_as(x)
    if baseline.shape != x.shape:
        raise ValueError(
            f"baseline must have the input's shape {tuple(x.shape)} or one example's shape "
            f"{tuple(x.shape[1:])}, got {tuple(baseline.shape)}"
        )
    return baseline.to(x.dtype)


def output(model: Model, x: torch.Tensor, target: int | torch.Tensor | None = None) -> torch.Tensor:
    """The explained scalar per example, ``model(x)[b, target[b]]``: ``(B,)``.

    ``target`` is a class index, one index per example ``(B,)``, or ``None`` for a model whose
    output is already ``(B,)``.
    """
    out = model(x)
    if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1 and target is None):
        if target is not None:
            raise ValueError(
                f"the model returns one number per example {tuple(out.shape)}; "
                f"pass target=None, got {target!r}"
            )
        return out.reshape(-1)
    if out.ndim != 2:
        raise ValueError(
            f"the model must return (batch,) or (batch, classes), got {tuple(out.shape)}"
        )
    if target is None:
        raise ValueError(
            f"the model returns {out.shape[1]} outputs per example: pass a target class"
        )
    index = torch.as_tensor(target, device=out.device).long().reshape(-1).expand(out.shape[0])
    if index.min() < 0 or index.max() >= out.shape[1]:
        raise ValueError(f"target must lie in [0, {out.shape[1]}), got {target!r}")
    return out.gather(1, index[:, None])[:, 0]  # (B,)


def gradient(
    model: Model, x: torch.Tensor, target: int | torch.Tensor | None = None
) -> torch.Tensor:
    """∂F/∂x per example (examples are independent: one backward of ΣF does it); shape of x."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(output(model, x, target).sum(), x)
    return grad


# ------------------------------------------------------------------------------ gradient methods
def saliency(
    model: Model, x: torch.Tensor, target: int | torch.Tensor | None = None, absolute: bool = True
) -> torch.Tensor:
    """Saliency map: ``|∂F/∂x|`` (``absolute=False``: the signed gradient). Shape of ``x``."""
    _check_input(x)
    grad = gradient(model, x, target)
    return grad.abs() if absolute else grad


def gradient_x_input(
    model: Model, x: torch.Tensor, target: int | torch.Tensor | None = None
) -> torch.Tensor:
    """``x ⊙ ∂F/∂x``: integrated gradients with a zero baseline for a model linear in x."""
    _check_input(x)
    return x.detach() * gradient(model, x, target)


def riemann(steps: int, method: str = "trapezoid") -> tuple[torch.Tensor, torch.Tensor]:
    """Points α ∈ [0, 1] and weights w of a quadrature rule with Σ w·g(α) ≈ ∫₀¹ g(α) dα.

    ``left``/``right``/``middle``: ``steps`` intervals of width 1/steps, one point each.
    ``trapezoid``: ``steps`` points 0, 1/(steps−1), …, 1 with weights 1/(steps−1), halved at
    the ends (the weights sum to 1, so a constant integrand is exact).
    """
    steps = validate.positive_int(steps, "steps")
    validate.one_of(method, RIEMANN, "method")
    if method == "trapezoid":
        if steps < 2:
            raise ValueError(f"the trapezoid rule needs steps >= 2, got {steps}")
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2
        return torch.linspace(0, 1, steps, dtype=torch.float64), weights
    start = {"left": 0.0, "middle": 0.5, "right": 1.0}[method]
    alphas = (torch.arange(steps, dtype=torch.float64) + start) / steps
    return alphas, torch.full((steps,), 1.0 / steps, dtype=torch.float64)


def integrated_gradients(
    model: Model,
    x: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    target: int | torch.Tensor | None = None,
    steps: int = 50,
    method: str = "trapezoid",
    return_delta: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients ``(x − x') ⊙ Σₖ wₖ ∂F/∂x (x' + αₖ(x − x'))`` (:func:`riemann`).

    With ``return_delta`` also the completeness gap per example, ``Σᵢ attrᵢ − (F(x) − F(x'))``
    ``(B,)``, which goes to 0 as ``steps`` grows.
    """
    _check_input(x)
    x = x.detach()
    x0 = _baseline(x, baseline)
    alphas, weights = riemann(steps, method)
    alphas, weights = alphas.to(x.device, x.dtype), weights.to(x.device, x.dtype)
    shape = (steps,) + (1,) * x.ndim
    path = x0 + alphas.view(shape) * (x - x0)  # (steps, B, *features)
    tgt = target
    if isinstance(target, torch.Tensor) and target.numel() > 1:
        tgt = target.repeat(steps)
    grads = gradient(model, path.flatten(0, 1), tgt).view_as(path)  # (steps, B, *features)
    attr = (x - x0) * (weights.view(shape) * grads).sum(0)  # (B, *features)
    if not return_delta:
        return attr
    return attr, completeness_delta(model, attr, x, x0, target)


def completeness_delta(
    model: Model,
    attributions: torch.Tensor,
    x: torch.Tensor,
    baseline: torch.Tensor | float | None = None,
    target: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """``Σᵢ attrᵢ − (F(x) − F(x'))`` per example ``(B,)``: zero for a complete method."""
    _check_input(x)
    validate.same_shape(attributions, x, "attributions", "x")
    x0 = _baseline(x, baseline)
    with torch.no_grad():
        gap = output(model, x, target) - output(model, x0, target)
    return attributions.flatten(1).sum(1) - gap


def smoothgrad(
    model: Model,
    x: torch.Tensor,
    target: int | torch.Tensor | None = None,
    n_samples: int = 25,
    sigma: float = 0.15,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """SmoothGrad: the mean gradient over ``n_samples`` noisy copies ``x + ε``, ``ε ~ N(0, σ²)``.

    ``noise`` ``(B, n_samples, *features)`` replaces the drawn ε (to reproduce a reference).
    """
    _check_input(x)
    n_samples = validate.positive_int(n_samples, "n_samples")
    validate.positive(sigma, "sigma")
    if noise is None:
        noise = sigma * torch.randn(
            (x.shape[0], n_samples) + x.shape[1:],
            generator=generator,
            dtype=x.dtype,
            device=x.device if generator is None else generator.device,
        )
        noise = noise.to(x.device)
    elif noise.shape != (x.shape[0], n_samples) + x.shape[1:]:
        raise ValueError(
            f"noise must be (batch, n_samples, *features) = "
            f"{(x.shape[0], n_samples) + tuple(x.shape[1:])}, got {tuple(noise.shape)}"
        )
    noisy = (x.detach()[:, None] + noise).flatten(0, 1)  # (B·n, *features)
    tgt = (
        target.repeat_interleave(n_samples)
        if isinstance(target, torch.Tensor) and target.numel() > 1
        else target
    )
    return gradient(model, noisy, tgt).view_as(noise).mean(1)  # (B, *features)
