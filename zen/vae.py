"""Variational autoencoders.

An encoder ``q(z | x) = N(μ(x), diag σ²(x))`` and a decoder ``p(x | z)`` are trained together
by maximising the evidence lower bound (Kingma & Welling, 2014)

    ELBO(x) = E_{q(z|x)}[log p(x | z)] − KL(q(z | x) ‖ N(0, I))  ≤  log p(x).

* :func:`reparameterize` — ``z = μ + σ ⊙ ε`` with ``ε ~ N(0, I)``: the sample is a
  differentiable function of ``(μ, log σ²)``, so the expectation's gradient flows through it;
* :func:`gaussian_kl` — the analytic ``KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ (μ² + σ² − 1 − log σ²)``;
* :func:`elbo` — one-sample Monte Carlo ELBO per example with a Bernoulli decoder (logits);
* :class:`VAE` — MLP encoder/decoder, and :func:`train_vae`, a plain loop over mini-batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from zen import validate
from zen.device import generator as seeded_generator
from zen.mlp import mlp


def _check_gaussian(mu: torch.Tensor, logvar: torch.Tensor) -> None:
    validate.ndim(mu, 2, "mu", "(batch, latent)")
    validate.floating(mu, "mu")
    validate.floating(logvar, "logvar")
    if mu.shape != logvar.shape:
        raise ValueError(
            f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}"
        )


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``z = μ + exp(½ log σ²) ⊙ ε``, ``ε ~ N(0, I)`` drawn on CPU from ``generator``; ``(batch, latent)``."""
    _check_gaussian(mu, logvar)
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(μ, diag σ²) ‖ N(0, I))`` per example: ``(batch, latent) -> (batch,)``.

    ``½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²)`` — closed form, no sampling.
    """
    _check_gaussian(mu, logvar)
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(dim=1)


def bernoulli_log_likelihood(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """``log p(x | z) = Σ_i [x_i log σ(ℓ_i) + (1 − x_i) log(1 − σ(ℓ_i))]`` per example: ``(batch, d) -> (batch,)``.

    ``x`` must lie in ``[0, 1]`` (grey levels are allowed: the usual, slightly unnormalised,
    treatment of pixel intensities as Bernoulli means).
    """
    validate.ndim(x, 2, "x", "(batch, features)")
    validate.floating(x, "x")
    validate.floating(logits, "logits")
    if x.shape != logits.shape:
        raise ValueError(
            f"x and logits must have the same shape, got {tuple(x.shape)} and {tuple(logits.shape)}"
        )
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"x must lie in [0, 1] for a Bernoulli decoder, got values in [{x.min().item():.3g}, {x.max().item():.3g}]"
        )
    # −softplus(−ℓ) = log σ(ℓ) and −softplus(ℓ) = log(1 − σ(ℓ)): finite for any logit
    return -(x * F.softplus(-logits) + (1 - x) * F.softplus(logits)).sum(dim=1)


@dataclass(frozen=True)
class ELBO:
    """Per-example terms ``(batch,)``: ``elbo = reconstruction − kl``."""

    elbo: torch.Tensor
    reconstruction: torch.Tensor  # one-sample estimate of E_q[log p(x | z)]
    kl: torch.Tensor  # analytic KL(q(z | x) ‖ p(z))


def elbo(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> ELBO:
    """ELBO per example from the decoder's logits ``(batch, d)`` at ``z = μ + σε`` and the posterior ``(μ, log σ²)``."""
    _check_gaussian(mu, logvar)
    validate.same_size(x, mu, 0, "x", "mu")
    rec = bernoulli_log_likelihood(x, logits)
    kl = gaussian_kl(mu, logvar)
    return ELBO(elbo=rec - kl, reconstruction=rec, kl=kl)


class VAE(nn.Module):
    """MLP VAE: encoder ``(n, in_dim) -> μ, log σ² (n, latent_dim)``, decoder ``(n, latent_dim) -> logits (n, in_dim)``."""

    def __init__(self, in_dim: int = 64, latent_dim: int = 2, hidden: int = 128, depth: int = 2):
        super().__init__()
        for value, name in (
            (in_dim, "in_dim"),
            (latent_dim, "latent_dim"),
            (hidden, "hidden"),
            (depth, "depth"),
        ):
            validate.positive_int(value, name)
        self.in_dim, self.latent_dim = in_dim, latent_dim
        self.encoder = mlp([in_dim] + [hidden] * depth + [2 * latent_dim])
        self.decoder = mlp([latent_dim] + [hidden] * depth + [in_dim])

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, in_dim) -> (μ, log σ²)``, each ``(n, latent_dim)``."""
        validate.ndim(x, 2, "x", "(batch, in_dim)")
        if x.shape[1] != self.in_dim:
            raise ValueError(f"x must have {self.in_dim} features, got shape {tuple(x.shape)}")
        mu, logvar = self.encoder(x).chunk(2, dim=1)  # (n, 2·latent) -> 2 × (n, latent)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(n, latent_dim) -> logits (n, in_dim)``; ``torch.sigmoid`` gives the mean image."""
        validate.ndim(z, 2, "z", "(batch, latent_dim)")
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have {self.latent_dim} features, got shape {tuple(z.shape)}")
        return self.decoder(z)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> ELBO:
        """One-sample ELBO terms for a batch ``(n, in_dim)``."""
        mu, logvar = self.encode(x)
        z = reparameterize(mu, logvar, generator)
        return elbo(x, self.decode(z), mu, logvar)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images ``σ(decoder(z))`` ``(n, in_dim)`` for ``z ~ N(0, I)``."""
        validate.positive_int(n, "n")
        device = next(self.parameters()).device
        return torch.sigmoid(
            self.decode(torch.randn(n, self.latent_dim, generator=generator).to(device))
        )


@dataclass
class VAEHistory:
    """Per epoch, means over the training set of the ELBO terms (nats per example)."""

    elbo: list[float] = field(default_factory=list)
    reconstruction: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)


def train_vae(
    model: VAE,
    data: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> VAEHistory:
    """Maximise the ELBO of ``data`` ``(n, in_dim)`` (values in ``[0, 1]``) with Adam; returns per-epoch means."""
    validate.ndim(data, 2, "data", "(n, features)")
    validate.positive_int(epochs, "epochs")
    validate.positive_int(batch_size, "batch_size")
    model.to(data.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = seeded_generator(seed)
    history = VAEHistory()
    for _ in tqdm(range(epochs), desc="VAE", disable=not progress):
        sums = torch.zeros(3)
        for idx in torch.randperm(len(data), generator=rng).split(batch_size):
            out = model(data[idx.to(data.device)], generator=rng)
            loss = -out.elbo.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += (
                torch.stack([out.elbo.sum(), out.reconstruction.sum(), out.kl.sum()]).detach().cpu()
            )
        means = (sums / len(data)).tolist()
        history.elbo.append(means[0])
        history.reconstruction.append(means[1])
        history.kl.append(means[2])
    model.eval()
    return history
