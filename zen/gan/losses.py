"""GAN losses on logits, the WGAN-GP critic's losses and penalty, and the optimal discriminator.

With ``D = σ(t)``: ``−log σ(t) = softplus(−t)`` and ``−log(1 − σ(t)) = softplus(t)``, so every
loss stays finite when the discriminator is certain.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from zen import validate

GENERATOR_LOSSES = ("saturating", "non_saturating")


def _check_scores(x: torch.Tensor, name: str) -> None:
    validate.ndim(x, 1, name, "(batch,) — one logit/score per sample")
    validate.floating(x, name)
    if x.numel() == 0:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------- losses
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """``−E[log D(x)] − E[log(1 − D(G(z)))]`` from logits ``(n_real,)`` and ``(n_fake,)``.

    With ``D = σ(t)``: ``−log σ(t) = softplus(−t)`` and ``−log(1 − σ(t)) = softplus(t)``.
    Equal to ``BCEWithLogits(real, 1) + BCEWithLogits(fake, 0)``; its minimum over ``D``
    is ``−V(D*, G) = log 4 − 2·JSD(p_data ‖ p_g)``.
    """
    _check_scores(real_logits, "real_logits")
    _check_scores(fake_logits, "fake_logits")
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """The generator's loss on the discriminator's logits ``(n,)`` for its samples.

    * ``"saturating"``: ``E[log(1 − D(G(z)))] = −E[softplus(t)]``; ``∂/∂t = −D/n``, which
      vanishes when ``D(G(z)) → 0`` — exactly early in training, when fakes are easy to spot.
    * ``"non_saturating"``: ``−E[log D(G(z))] = E[softplus(−t)]``; ``∂/∂t = −(1 − D)/n``,
      largest when the fakes are worst. Same fixed point, far better gradients.
    """
    _check_scores(fake_logits, "fake_logits")
    if kind == "saturating":
        return -F.softplus(fake_logits).mean()
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    raise ValueError(f"kind must be one of {GENERATOR_LOSSES}, got {kind!r}")


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """``E[f(G(z))] − E[f(x)]``: the critic ``f`` maximises the gap (an estimate of W1 when ``f`` is
    1-Lipschitz)."""
    _check_scores(real_scores, "real_scores")
    _check_scores(fake_scores, "fake_scores")
    return fake_scores.mean() - real_scores.mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """``−E[f(G(z))]``: the generator raises the critic's score of its samples."""
    _check_scores(fake_scores, "fake_scores")
    return -fake_scores.mean()


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``E[(‖∇_x̂ f(x̂)‖₂ − 1)²]`` at ``x̂ = α·real + (1 − α)·fake``.

    Args:
        critic: maps ``(n, ...)`` to scores ``(n,)``.
        real, fake: ``(n, ...)`` batches of the same shape.
        alpha: ``(n,)`` mixing weights in ``[0, 1]``; drawn ``U(0, 1)`` (from ``generator``) if
            ``None``.

    The gradient is taken with ``create_graph=True``, so the penalty is differentiable with
    respect to the critic's parameters (it is added to the critic's loss).
    """
    validate.tensor(real, "real")
    validate.tensor(fake, "fake")
    validate.floating(real, "real")
    if real.shape != fake.shape or real.ndim < 2:
        raise ValueError(
            f"real and fake must have the same shape (n, ...), got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    n = real.shape[0]
    if alpha is None:
        alpha = torch.rand(n, generator=generator, dtype=real.dtype).to(real.device)
    validate.ndim(alpha, 1, "alpha", "(n,)")
    if alpha.shape[0] != n:
        raise ValueError(f"alpha must have shape ({n},), got {tuple(alpha.shape)}")
    a = alpha.reshape(n, *([1] * (real.ndim - 1)))  # (n,) -> (n, 1, ..., 1) to broadcast
    x_hat = (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    _check_scores(scores, "critic(x_hat)")
    (grad,) = torch.autograd.grad(
        scores.sum(), x_hat, create_graph=True
    )  # (n, ...): row i = ∇f(x̂_i)
    norms = grad.flatten(1).norm(dim=1)  # (n,)
    return ((norms - 1) ** 2).mean()


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """``D*(x) = p_data(x) / (p_data(x) + p_g(x))`` from two density tensors of the same shape.

    Where both densities are zero ``D*`` is undefined (no sample ever lands there); it is set
    to ``1/2`` there.
    """
    validate.floating(p_data, "p_data")
    validate.floating(p_g, "p_g")
    if p_data.shape != p_g.shape:
        raise ValueError(
            f"p_data and p_g must have the same shape, got {tuple(p_data.shape)} and "
            f"{tuple(p_g.shape)}"
        )
    if (p_data < 0).any() or (p_g < 0).any():
        raise ValueError("densities must be non-negative")
    total = p_data + p_g
    return torch.where(
        total > 0,
        p_data / total.clamp_min(torch.finfo(total.dtype).tiny),
        torch.full_like(total, 0.5),
    )
