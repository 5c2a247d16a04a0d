"""Reference code of the VAE chapter: reparameterisation, analytic KL, ELBO, the VAE and its
training loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Independent, Normal, kl_divergence

from zen.data import load_digits
from zen.vae import (
    VAE,
    bernoulli_log_likelihood,
    elbo,
    gaussian_kl,
    iwae_bound,
    reparameterize,
    train_vae,
)


def test_gaussian_kl_matches_torch_distributions(device):
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(7, 3, generator=g, dtype=torch.float64).to(device)
    logvar = torch.randn(7, 3, generator=g, dtype=torch.float64).to(device)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p = Independent(Normal(torch.zeros_like(mu), torch.ones_like(mu)), 1)
    assert torch.allclose(gaussian_kl(mu, logvar), kl_divergence(q, p))


def test_gaussian_kl_hand_computed():
    # μ = 1, σ² = e: ½(1 + e − 1 − 1) = (e − 1)/2; the standard normal has KL 0
    assert gaussian_kl(torch.tensor([[1.0]]), torch.tensor([[1.0]])).item() == pytest.approx(
        (math.e - 1) / 2
    )
    assert gaussian_kl(torch.zeros(2, 4), torch.zeros(2, 4)).abs().max().item() == 0.0


def test_reparameterize_has_the_right_moments_and_gradients(device):
    mu = (
        torch.tensor([[2.0, -1.0]], device=device)
        .expand(20000, 2)
        .contiguous()
        .requires_grad_(True)
    )
    logvar = (
        torch.log(torch.tensor([[0.25, 4.0]], device=device))
        .expand(20000, 2)
        .contiguous()
        .requires_grad_(True)
    )
    z = reparameterize(mu, logvar, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z.mean(0), torch.tensor([2.0, -1.0], device=device), atol=0.05)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 2.0], device=device), atol=0.05)
    z.sum().backward()  # ∂z/∂μ = 1, ∂z/∂logvar = ½σε
    assert torch.all(mu.grad == 1)
    eps = (z.detach() - mu.detach()) / (0.5 * logvar.detach()).exp()
    assert torch.allclose(logvar.grad, 0.5 * (0.5 * logvar.detach()).exp() * eps, atol=1e-6)


def test_bernoulli_log_likelihood_matches_bce(device):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 64, generator=g, dtype=torch.float64).to(device)
    logits = (10 * torch.randn(5, 64, generator=g, dtype=torch.float64)).to(device)
    ref = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
    assert torch.allclose(bernoulli_log_likelihood(x, logits), ref)


def test_elbo_terms_and_bound(device):
    torch.manual_seed(0)
    model = VAE(64, latent_dim=2, hidden=32).to(device)
    x = load_digits().train.x[:16].to(device)
    out = model(x, generator=torch.Generator().manual_seed(0))
    assert out.elbo.shape == (16,)
    assert torch.allclose(out.elbo, out.reconstruction - out.kl)
    assert (out.kl >= 0).all()
    mu, logvar = model.encode(x)
    direct = elbo(x, model.decode(mu), mu, logvar)
    assert torch.allclose(direct.kl, out.kl)


def test_train_vae_improves_the_elbo(device):
    torch.manual_seed(0)
    x = load_digits().train.x[:512].to(device)
    model = VAE(64, latent_dim=4, hidden=64)
    hist = train_vae(model, x, epochs=8, progress=False)
    assert hist.elbo[-1] > hist.elbo[0] + 3.0
    assert model.sample(6, generator=torch.Generator().manual_seed(0)).shape == (6, 64)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="same shape"):
        gaussian_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="mu must be 2-D"):
        reparameterize(torch.zeros(3), torch.zeros(3))
    with pytest.raises(TypeError, match="floating-point"):
        gaussian_kl(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        bernoulli_log_likelihood(torch.full((1, 4), 2.0), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="x must have 64 features"):
        VAE(64).encode(torch.zeros(3, 10))
    with pytest.raises(ValueError, match="z must have 2 features"):
        VAE(64, latent_dim=2).decode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="positive integer"):
        VAE(64, latent_dim=0)


def test_iwae_bound_matches_a_hand_written_importance_sampler(device):
    torch.manual_seed(0)
    model = VAE(6, latent_dim=2, hidden=8).to(device)
    x = torch.rand(5, 6, generator=torch.Generator().manual_seed(0)).to(device)
    got = iwae_bound(model, x, 7, generator=torch.Generator().manual_seed(1))
    # the same draws, with torch.distributions for every density
    eps = torch.randn(7, 5, 2, generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
        z = mu + (0.5 * logvar).exp() * eps  # (7, 5, 2)
        prior = Independent(Normal(torch.zeros_like(z), torch.ones_like(z)), 1)
        logits = model.decode(z.reshape(-1, 2)).reshape(7, 5, 6)
        log_lik = -F.binary_cross_entropy_with_logits(
            logits, x.expand(7, 5, 6), reduction="none"
        ).sum(-1)
        log_w = log_lik + prior.log_prob(z) - q.log_prob(z)  # (7, 5)
        expected = torch.logsumexp(log_w, 0) - math.log(7)
    assert got.shape == (5,) and torch.allclose(got, expected, atol=1e-5)


def test_iwae_bound_tightens_with_k():
    torch.manual_seed(0)
    digits = load_digits()
    model = VAE(64, latent_dim=2, hidden=32)  # untrained: a decoder that depends on z, a poor q
    x = digits.test.x[:100]
    means = [
        iwae_bound(model, x, k, generator=torch.Generator().manual_seed(0)).mean().item()
        for k in (1, 10, 100)
    ]
    assert means[0] < means[1] < means[2]
    with pytest.raises(ValueError, match="positive integer"):
        iwae_bound(model, x, 0)


def test_train_vae_beta_warmup_free_bits():
    digits = load_digits()
    data = digits.train.x[:256]
    kls = {}
    for beta in (0.25, 4.0):
        torch.manual_seed(0)
        model = VAE(64, latent_dim=2, hidden=32)
        h = train_vae(model, data, epochs=4, beta=beta, progress=False)
        kls[beta] = h.kl[-1]
        assert h.beta == [beta] * 4
    assert kls[0.25] > kls[4.0]  # a heavier KL weight buys a cheaper code
    torch.manual_seed(0)
    h = train_vae(VAE(64, latent_dim=2, hidden=32), data, epochs=5, warmup_epochs=4, progress=False)
    assert h.beta == [0.0, 0.25, 0.5, 0.75, 1.0]
    # free bits far above every latent's KL: the KL term has no gradient, as with beta = 0
    params = {}
    for kind, options in (("free", dict(free_bits=100.0)), ("beta0", dict(beta=0.0))):
        torch.manual_seed(0)
        model = VAE(64, latent_dim=2, hidden=32)
        train_vae(model, data, epochs=1, progress=False, **options)
        params[kind] = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert torch.allclose(params["free"], params["beta0"])
    with pytest.raises(ValueError, match="beta and free_bits"):
        train_vae(VAE(64), data, epochs=1, beta=-1.0)
    with pytest.raises(ValueError, match="warmup_epochs"):
        train_vae(VAE(64), data, epochs=1, warmup_epochs=-2)


def test_sample_means_and_bernoulli_draws():
    torch.manual_seed(0)
    model = VAE(16, latent_dim=2, hidden=8)
    means = model.sample(200, generator=torch.Generator().manual_seed(0))
    draws = model.sample(200, generator=torch.Generator().manual_seed(0), mean=False)
    assert ((means > 0) & (means < 1)).all()
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    # the draws are Bernoulli(means) for the same z: on average they agree
    assert (draws.mean() - means.mean()).abs() < 0.05
