"""Variational autoencoders.

An encoder ``q(z | x) = N(μ(x), diag σ²(x))`` and a decoder ``p(x | z)`` are trained together
by maximising the evidence lower bound (Kingma & Welling, 2014)

    ELBO(x) = E_{q(z|x)}[log p(x | z)] − KL(q(z | x) ‖ N(0, I))  ≤  log p(x).

* :func:`reparameterize` — ``z = μ + σ ⊙ ε`` with ``ε ~ N(0, I)``: the sample is a
  differentiable function of ``(μ, log σ²)``, so the expectation's gradient flows through it;
* :func:`gaussian_kl` — the analytic ``KL(N(μ, σ²) ‖ N(0, I)) = ½ Σ (μ² + σ² − 1 − log σ²)``;
* :func:`elbo` — one-sample Monte Carlo ELBO per example with a Bernoulli decoder (logits);
* :func:`iwae_bound` — the importance-weighted bound (Burda et al., 2016)
  ``L_K = E[log (1/K) Σ_k p(x, z_k) / q(z_k | x)]``, ``z_k ~ q(z | x)``: ``L_1`` is the ELBO,
  ``L_K`` grows with ``K`` and tends to ``log p(x)``;
* :class:`VAE` — MLP encoder/decoder, and :func:`train_vae`, a plain loop over mini-batches,
  with a KL weight ``β`` (β-VAE), a linear KL warm-up and free bits against posterior collapse.
"""

from __future__ import annotations

import math
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
            f"mu and logvar must have the same shape, got {tuple(mu.shape)} and "
            f"{tuple(logvar.shape)}"
        )


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``z = μ + exp(½ log σ²) ⊙ ε``, ``ε ~ N(0, I)`` drawn on CPU from ``generator``; ``(batch,
    latent)``."""
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
    """``log p(x | z) = Σ_i [x_i log σ(ℓ_i) + (1 − x_i) log(1 − σ(ℓ_i))]`` per example: ``(batch, d)
    -> (batch,)``.

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
            f"x must lie in [0, 1] for a Bernoulli decoder, got values in [{x.min().item():.3g}, "
            f"{x.max().item():.3g}]"
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
    """ELBO per example from the decoder's logits ``(batch, d)`` at ``z = μ + σε`` and the posterior
    ``(μ, log σ²)``."""
    _check_gaussian(mu, logvar)
    validate.same_size(x, mu, 0, "x", "mu")
    rec = bernoulli_log_likelihood(x, logits)
    kl = gaussian_kl(mu, logvar)
    return ELBO(elbo=rec - kl, reconstruction=rec, kl=kl)


class VAE(nn.Module):
    """MLP VAE: encoder ``(n, in_dim) -> μ, log σ² (n, latent_dim)``, decoder ``(n, latent_dim) ->
    logits (n, in_dim)``."""

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
    def sample(
        self, n: int, generator: torch.Generator | None = None, mean: bool = True
    ) -> torch.Tensor:
        """``(n, in_dim)`` images for ``z ~ N(0, I)`` (all noise drawn on CPU from ``generator``).

        ``mean=True`` gives the decoder's mean ``σ(decoder(z))`` — not a sample of ``p(x | z)``
        but its expectation; ``mean=False`` draws the Bernoulli pixels, ``x ~ p(x | z)``, which
        are 0 or 1 (a grey level is never a draw of a Bernoulli likelihood).
        """
        validate.positive_int(n, "n")
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator)
        probs = torch.sigmoid(self.decode(z.to(device)))
        if mean:
            return probs
        return torch.bernoulli(probs.cpu(), generator=generator).to(device)


@torch.no_grad()
def iwae_bound(
    model: VAE, x: torch.Tensor, k: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Importance-weighted lower bound ``L_K`` on ``log p(x)`` per example: ``(n, in_dim) -> (n,)``.

    ``L_K = log (1/K) Σ_k w_k`` with ``w_k = p(x | z_k) p(z_k) / q(z_k | x)`` and ``z_k ~ q(z | x)``
    (Burda et al., 2016). Its expectation is ``≤ log p(x)``, grows with ``K`` and reaches
    ``log p(x)`` as ``K → ∞``; for ``K = 1`` it is the one-sample ELBO with a sampled KL.
    """
    validate.positive_int(k, "k")
    mu, logvar = model.encode(x)  # (n, latent) each
    std = torch.exp(0.5 * logvar)
    eps = torch.randn((k, *mu.shape), generator=generator, dtype=mu.dtype).to(mu.device)
    z = mu + std * eps  # (k, n, latent)
    log_q = (-0.5 * eps.pow(2) - torch.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)  # (k, n)
    log_prior = (-0.5 * z.pow(2) - 0.5 * math.log(2 * math.pi)).sum(-1)  # (k, n)
    logits = model.decode(z.flatten(0, 1))  # (k·n, in_dim)
    log_lik = bernoulli_log_likelihood(x.repeat(k, 1), logits).view(k, -1)  # (k, n)
    return torch.logsumexp(log_lik + log_prior - log_q, dim=0) - math.log(k)  # (n,)


@dataclass
class VAEHistory:
    """Per epoch, means over the training set of the ELBO terms (nats per example).

    ``beta`` is the KL weight used in that epoch (it ramps up during a warm-up).
    """

    elbo: list[float] = field(default_factory=list)
    reconstruction: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    beta: list[float] = field(default_factory=list)


def train_vae(
    model: VAE,
    data: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    beta: float = 1.0,
    warmup_epochs: int = 0,
    free_bits: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> VAEHistory:
    """Maximise the ELBO of ``data`` ``(n, in_dim)`` (values in ``[0, 1]``) with Adam; returns per-
    epoch means.

    The loss per batch is ``−reconstruction + β_t · KL'``:

    * ``beta``: the KL weight (``1`` is the ELBO; other values give a β-VAE, Higgins et al., 2017);
    * ``warmup_epochs``: KL annealing (Bowman et al., 2016) — ``β_t`` grows linearly from 0 in
      the first epoch to ``beta`` at epoch ``warmup_epochs``;
    * ``free_bits``: ``KL' = Σ_j max(λ, KL_j)`` with ``KL_j`` the batch-mean KL of latent ``j``
      and ``λ = free_bits`` nats (Kingma et al., 2016): below ``λ`` a latent pays nothing, so
      there is no gain in collapsing it onto the prior.

    The history records the true ELBO terms whatever the loss.
    """
    validate.ndim(data, 2, "data", "(n, features)")
    validate.positive_int(epochs, "epochs")
    validate.positive_int(batch_size, "batch_size")
    if beta < 0 or free_bits < 0:
        raise ValueError(f"beta and free_bits must be >= 0, got beta={beta}, free_bits={free_bits}")
    if not isinstance(warmup_epochs, int) or warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be a non-negative int, got {warmup_epochs!r}")
    model.to(data.device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = seeded_generator(seed)
    history = VAEHistory()
    for epoch in tqdm(range(epochs), desc="VAE", disable=not progress):
        beta_t = beta * min(1.0, epoch / warmup_epochs) if warmup_epochs else beta
        sums = torch.zeros(3)
        for idx in torch.randperm(len(data), generator=rng).split(batch_size):
            x = data[idx.to(data.device)]
            mu, logvar = model.encode(x)
            z = reparameterize(mu, logvar, rng)
            out = elbo(x, model.decode(z), mu, logvar)
            kl_dims = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).mean(dim=0)  # (latent,)
            kl_term = kl_dims.clamp_min(free_bits).sum() if free_bits else out.kl.mean()
            loss = -out.reconstruction.mean() + beta_t * kl_term
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
        history.beta.append(beta_t)
    model.eval()
    return history
