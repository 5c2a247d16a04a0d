"""Adversarial examples, adversarial training and a backdoor trigger.

An attacker with a budget ε may move every input feature by at most ε (the L∞ ball) and must
stay a valid input (pixels in ``[lo, hi]``). The attack maximises the classifier's loss ℓ:

    FGSM  (Goodfellow et al. 2015)   x' = clip(x + ε · sign ∇ₓ ℓ(f(x), y))
    PGD   (Madry et al. 2018)        x⁰ = x (+ U[−ε, ε] with a random start)
                                     xᵗ⁺¹ = Π(xᵗ + α · sign ∇ₓ ℓ(f(xᵗ), y))
    Π(z) = clip(min(max(z, x − ε), x + ε), lo, hi)   the projection onto ball ∩ valid box

PGD with one step, no random start and step size α = ε *is* FGSM. Adversarial training
(Madry et al.) minimises the loss on PGD examples instead of clean ones.

    x (B, *features), y (B,) ─ attack ─▶ x' (B, *features),  ‖x' − x‖∞ ≤ ε,  lo ≤ x' ≤ hi

A backdoor (BadNets, Gu et al. 2017) is planted in training data: a small trigger patch is
stamped on a few images that are relabelled to a target class.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate

Model = Callable[[torch.Tensor], torch.Tensor]


def _check_attack(x: torch.Tensor, y: torch.Tensor, eps: float, bounds: tuple[float, float]):
    validate.ndim_at_least(x, 2, "x", "(batch, *features)")
    validate.floating(x, "x")
    validate.ndim(y, 1, "y", "(batch,) of class ids")
    validate.same_size(x, y, 0, "x", "y")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a number, got {type(eps).__name__}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    lo, hi = bounds
    if not lo < hi:
        raise ValueError(f"bounds must be (lo, hi) with lo < hi, got {bounds!r}")


def input_gradient(model: Model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇ₓ of the mean cross-entropy of ``model(x)`` against ``y``; ``(B, *features)``.

    Only the input gets a gradient: the parameters' ``.grad`` are left untouched.
    """
    x = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(x), y)  # (B, classes) vs (B,)
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def project_linf(
    x_adv: torch.Tensor, x: torch.Tensor, eps: float, bounds: tuple[float, float] = (0.0, 1.0)
) -> torch.Tensor:
    """Π: the nearest point to ``x_adv`` in the L∞ ball of radius ``eps`` around ``x``,
    intersected with the valid box ``bounds`` (coordinate-wise clipping is exact for L∞)."""
    validate.same_shape(x_adv, x, "x_adv", "x")
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(*bounds)


def fgsm(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """The fast gradient sign method: one step of size ``eps`` along ``sign ∇ₓ ℓ``.

    Args:
        model: maps ``(B, *features)`` to logits ``(B, classes)``.
        x: clean inputs ``(B, *features)`` inside ``bounds``.
        y: true labels ``(B,)``.
        eps: the L∞ budget, ``>= 0``.
        bounds: the valid input range ``(lo, hi)``.
    Returns:
        adversarial inputs ``(B, *features)``, detached.
    """
    _check_attack(x, y, eps, bounds)
    grad = input_gradient(model, x, y)
    return project_linf(x + eps * grad.sign(), x, eps, bounds).detach()


def pgd(
    model: Model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> torch.Tensor:
    """Projected gradient descent on the loss (ascent): ``steps`` signed steps of
    ``step_size``, each followed by the projection onto the ``eps``-ball and ``bounds``.

    With ``random_start`` the first iterate is uniform in the ball (drawn from ``generator``,
    on ``x``'s device). Same arguments and result as :func:`fgsm`.
    """
    _check_attack(x, y, eps, bounds)
    steps = validate.positive_int(steps, "steps")
    validate.positive(step_size, "step_size")
    x = x.detach()
    x_adv = x
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x_adv = project_linf(x + eps * (2 * noise - 1), x, eps, bounds)  # U[−ε, ε]
    for _ in range(steps):
        grad = input_gradient(model, x_adv, y)
        x_adv = project_linf(x_adv + step_size * grad.sign(), x, eps, bounds)
    return x_adv.detach()


def adversarial_training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    generator: torch.Generator | None = None,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> float:
    """One step of Madry et al.'s min–max training: attack the batch with :func:`pgd`
    (random start), then take an optimizer step on the loss of the adversarial batch.

    Returns the adversarial batch's loss before the step.
    """
    x_adv = pgd(model, x, y, eps, step_size, steps, True, generator, bounds)
    loss = F.cross_entropy(model(x_adv), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def accuracy(model: Model, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of ``x`` (``(B, *features)``) that ``model`` classifies as ``y``, without grad."""
    validate.same_size(x, y, 0, "x", "y")
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def add_trigger(x: torch.Tensor, size: int = 2, value: float = 1.0) -> torch.Tensor:
    """Stamp a ``size × size`` square of ``value`` in the bottom-right corner of images
    ``(B, C, H, W)``; returns a new tensor."""
    validate.ndim(x, 4, "x", "(batch, channels, height, width)")
    size = validate.positive_int(size, "size")
    if size > min(x.shape[-2:]):
        raise ValueError(f"size must fit the image {tuple(x.shape[-2:])}, got {size}")
    out = x.clone()
    out[..., -size:, -size:] = value
    return out


def plant_backdoor(
    x: torch.Tensor,
    y: torch.Tensor,
    fraction: float,
    target: int,
    generator: torch.Generator | None = None,
    size: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Poison a training set: stamp the trigger on a random ``fraction`` of the images whose
    label is not ``target`` and relabel them ``target`` (BadNets).

    Returns ``(x_poisoned, y_poisoned, poisoned_index)``; ``x`` is ``(B, C, H, W)``.
    """
    validate.same_size(x, y, 0, "x", "y")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    others = (y != target).nonzero().squeeze(1).cpu()  # candidates, (n_other,)
    n = max(1, round(fraction * len(y)))
    if n > len(others):
        raise ValueError(f"fraction {fraction} asks for {n} images, only {len(others)} qualify")
    index = others[torch.randperm(len(others), generator=generator)[:n]].to(x.device)
    x_p, y_p = x.clone(), y.clone()
    x_p[index] = add_trigger(x[index], size)
    y_p[index] = target
    return x_p, y_p, index
