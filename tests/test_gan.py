"""Reference code of the GAN chapter: GAN losses, gradient penalty, networks, training and
diagnostics."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zen.data import make_blobs_2d
from zen.gan import (
    MLPDiscriminator,
    MLPGenerator,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    mode_coverage,
    optimal_discriminator,
    precision_recall,
    train_gan,
    wgan_critic_loss,
    wgan_generator_loss,
)


def test_losses_match_hand_computed_values():
    # D(x) = σ(0) = 1/2 for the real sample, D(G(z)) = σ(ln 3) = 3/4 for the fake
    real, fake = torch.tensor([0.0]), torch.tensor([math.log(3.0)])
    assert discriminator_loss(real, fake).item() == pytest.approx(-math.log(0.5) - math.log(0.25))
    assert generator_loss(fake, "saturating").item() == pytest.approx(math.log(0.25))
    assert generator_loss(fake, "non_saturating").item() == pytest.approx(-math.log(0.75))
    scores_real, scores_fake = torch.tensor([1.0, 3.0]), torch.tensor([-2.0, 0.0])
    assert wgan_critic_loss(scores_real, scores_fake).item() == pytest.approx(-1.0 - 2.0)
    assert wgan_generator_loss(scores_fake).item() == pytest.approx(1.0)


def test_losses_match_bce_with_logits(device):
    g = torch.Generator().manual_seed(0)
    real = (5 * torch.randn(33, generator=g, dtype=torch.float64)).to(device)
    fake = (5 * torch.randn(17, generator=g, dtype=torch.float64)).to(device)
    bce = F.binary_cross_entropy_with_logits
    ref_d = bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))
    assert torch.allclose(discriminator_loss(real, fake), ref_d)
    assert torch.allclose(generator_loss(fake, "non_saturating"), bce(fake, torch.ones_like(fake)))
    assert torch.allclose(generator_loss(fake, "saturating"), -bce(fake, torch.zeros_like(fake)))


def test_generator_gradients_saturate_as_the_theory_says():
    # d/dt of the per-sample loss: saturating −D, non-saturating −(1 − D)
    t = torch.linspace(-8, 8, 41, dtype=torch.float64, requires_grad=True)
    d = torch.sigmoid(t.detach())
    (g_sat,) = torch.autograd.grad(generator_loss(t, "saturating") * len(t), t)
    (g_ns,) = torch.autograd.grad(generator_loss(t, "non_saturating") * len(t), t)
    assert torch.allclose(g_sat, -d) and torch.allclose(g_ns, -(1 - d))


def test_losses_are_finite_for_confident_discriminators():
    t = torch.tensor([-200.0, 200.0])
    for value in (
        discriminator_loss(t, t),
        generator_loss(t, "saturating"),
        generator_loss(t, "non_saturating"),
    ):
        assert torch.isfinite(value)


def test_gradient_penalty_of_a_linear_critic_is_hand_computable(device):
    # f(x) = x·w + b has ∇f = w everywhere: penalty (‖w‖ − 1)², d/dw = 2(‖w‖ − 1) w/‖w‖
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
    real = torch.randn(8, 5, generator=g, dtype=torch.float64).to(device)
    fake = torch.randn(8, 5, generator=g, dtype=torch.float64).to(device)
    gp = gradient_penalty(lambda x: x @ w + 0.3, real, fake, generator=g)
    norm = w.detach().norm()
    assert torch.allclose(gp, (norm - 1) ** 2)
    gp.backward()
    assert torch.allclose(w.grad, 2 * (norm - 1) * w.detach() / norm)


def test_gradient_penalty_matches_per_sample_autograd(device):
    g = torch.Generator().manual_seed(2)
    torch.manual_seed(2)
    critic = MLPDiscriminator(3, hidden=16).double().to(device)
    real = torch.randn(6, 3, generator=g, dtype=torch.float64).to(device)
    fake = torch.randn(6, 3, generator=g, dtype=torch.float64).to(device)
    alpha = torch.rand(6, generator=g, dtype=torch.float64).to(device)
    gp = gradient_penalty(critic, real, fake, alpha=alpha)
    # reference: one autograd call per interpolated point
    norms = []
    for i in range(6):
        x = (alpha[i] * real[i] + (1 - alpha[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x).sum(), x)
        norms.append(grad.norm())
    assert torch.allclose(gp, ((torch.stack(norms) - 1) ** 2).mean())
    gp.backward()  # differentiable w.r.t. the critic's parameters
    weights = [p for name, p in critic.named_parameters() if name.endswith("weight")]
    assert all(w.grad is not None and torch.isfinite(w.grad).all() for w in weights)


def test_optimal_discriminator():
    p_data, p_g = torch.tensor([0.3, 0.0, 0.2, 0.0]), torch.tensor([0.1, 0.4, 0.2, 0.0])
    assert torch.allclose(optimal_discriminator(p_data, p_g), torch.tensor([0.75, 0.0, 0.5, 0.5]))


def test_networks_shapes(device):
    G = MLPGenerator(4, 64, hidden=32, output="sigmoid").to(device)
    D = MLPDiscriminator(64, hidden=32).to(device)
    x = G.sample(10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (10, 64) and x.min() >= 0 and x.max() <= 1
    assert D(x).shape == (10,)


def test_train_gan_learns_a_1d_gaussian(device):
    torch.manual_seed(0)
    data = (3.0 + 0.5 * torch.randn(2048, 1, generator=torch.Generator().manual_seed(0))).to(device)
    G, D = MLPGenerator(2, 1, hidden=16), MLPDiscriminator(1, hidden=16)
    hist = train_gan(G, D, data, steps=400, lr=2e-3, progress=False, snapshot_every=200)
    samples = G.sample(2000, generator=torch.Generator().manual_seed(1))
    assert abs(samples.mean().item() - 3.0) < 0.3
    assert len(hist.g_loss) == 400 and sorted(hist.snapshots) == [0, 200, 400]


def test_train_gan_wgan_gp_runs(device):
    torch.manual_seed(0)
    data = make_blobs_2d(256, centers=4, spread=0.05).x.to(device)
    G, D = MLPGenerator(2, 2, hidden=16), MLPDiscriminator(2, hidden=16)
    hist = train_gan(G, D, data, steps=20, loss="wgan-gp", d_steps=2, progress=False)
    assert all(math.isfinite(v) for v in hist.d_loss + hist.g_loss)


def test_mode_coverage():
    blobs = make_blobs_2d(800, centers=8, spread=0.05, radius=2.0, seed=0)
    angles = torch.arange(8) * (2 * torch.pi / 8)
    centers = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    full = mode_coverage(blobs.x, centers, std=0.05)
    assert full.covered == 8 and full.high_quality > 0.97
    collapsed = mode_coverage(blobs.x[blobs.y < 2], centers, std=0.05)
    assert collapsed.covered == 2
    noise = mode_coverage(torch.zeros(100, 2), centers, std=0.05)
    assert noise.covered == 0 and noise.high_quality == 0.0


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"real_logits must be 1-D"):
        discriminator_loss(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(TypeError, match="floating-point"):
        generator_loss(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="kind must be one of"):
        generator_loss(torch.zeros(4), "minimax")
    with pytest.raises(ValueError, match="at least one sample"):
        wgan_critic_loss(torch.zeros(0), torch.zeros(3))
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(lambda x: x.sum(1), torch.zeros(4, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="non-negative"):
        optimal_discriminator(torch.tensor([-0.1]), torch.tensor([0.1]))
    with pytest.raises(ValueError, match="z must have 4 features"):
        MLPGenerator(4, 2)(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="loss must be one of"):
        train_gan(MLPGenerator(1, 1), MLPDiscriminator(1), torch.zeros(8, 1), steps=1, loss="lsgan")
    with pytest.raises(ValueError, match="must agree"):
        train_gan(MLPGenerator(1, 2), MLPDiscriminator(1), torch.zeros(8, 1), steps=1)
    with pytest.raises(ValueError, match="positive integer"):
        MLPDiscriminator(0)


def test_train_gan_options_pack_ema_sgd(device):
    torch.manual_seed(0)
    data = make_blobs_2d(256, centers=4, spread=0.05).x.to(device)
    G, D = MLPGenerator(2, 2, hidden=16), MLPDiscriminator(2 * 4, hidden=16)  # D reads packs of 4
    hist = train_gan(
        G,
        D,
        data,
        steps=10,
        pack=4,
        ema_decay=0.9,
        optimizer="sgd",
        lr=0.01,
        lr_d=0.02,
        snapshot_every=5,
        progress=False,
    )
    assert sorted(hist.ema_snapshots) == [0, 5, 10]
    # the average lies between its start and the final weights: 0.9^10 of the start remains
    assert not torch.equal(hist.ema_snapshots[10], hist.snapshots[10])
    with pytest.raises(ValueError, match="multiple of pack"):
        train_gan(G, D, data, steps=1, pack=4, batch_size=30)
    with pytest.raises(ValueError, match="optimizer must be"):
        train_gan(G, D, data, steps=1, pack=4, optimizer="rmsprop")
    with pytest.raises(ValueError, match="ema_decay"):
        train_gan(G, D, data, steps=1, pack=4, ema_decay=1.5)


def test_ema_generator_is_the_running_average():
    torch.manual_seed(0)
    data = torch.randn(64, 1)
    G, D = MLPGenerator(1, 1, hidden=4), MLPDiscriminator(1, hidden=4)
    start = [p.detach().clone() for p in G.parameters()]
    hist = train_gan(G, D, data, steps=1, ema_decay=0.75, progress=False)
    for p0, p, pe in zip(start, G.parameters(), hist.ema_generator.parameters()):
        assert torch.allclose(pe, 0.75 * p0 + 0.25 * p.detach())


def test_conditional_networks_read_the_class(device):
    G = MLPGenerator(4, 6, hidden=16, num_classes=3).to(device)
    D = MLPDiscriminator(6, hidden=16, num_classes=3).to(device)
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(0)).to(device)
    y = torch.tensor([0, 1, 2, 0, 1], device=device)
    x = G(z, y)
    assert x.shape == (5, 6) and D(x, y).shape == (5,)
    # same noise, another class: another sample; the class enters as a one-hot input
    assert not torch.allclose(G(z, (y + 1) % 3), x)
    first = G.net[0]
    expected = F.linear(torch.cat([z, F.one_hot(y, 3).float()], 1), first.weight, first.bias)
    assert torch.allclose(first(torch.cat([z, F.one_hot(y, 3).float()], 1)), expected)
    assert G.sample(5, generator=torch.Generator().manual_seed(0), y=y).shape == (5, 6)
    with pytest.raises(ValueError, match="conditional"):
        G(z)
    with pytest.raises(ValueError, match="unconditional"):
        MLPGenerator(4, 6)(z, y)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 3\)"):
        G(z, torch.tensor([0, 1, 2, 3, 0], device=device))
    with pytest.raises(TypeError, match="int64"):
        G(z, y.float())
    with pytest.raises(ValueError, match="num_classes"):
        MLPDiscriminator(6, num_classes=-1)


def test_train_conditional_gan_learns_class_means(device):
    """Two classes with different means: each requested class comes out near its own mean."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(2).repeat(512)
    data = torch.where(y == 0, -3.0, 3.0).unsqueeze(1) + 0.3 * torch.randn(1024, 1, generator=g)
    torch.manual_seed(0)
    G = MLPGenerator(2, 1, hidden=32, num_classes=2)
    D = MLPDiscriminator(1, hidden=32, num_classes=2)
    for loss in ("non_saturating", "wgan-gp"):
        hist = train_gan(
            G,
            D,
            data.to(device),
            labels=y.to(device),
            steps=400 if loss != "wgan-gp" else 5,
            lr=3e-3,
            loss=loss,
            snapshot_every=5,
            n_snapshot=10,
            progress=False,
        )
        assert all(math.isfinite(v) for v in hist.d_loss + hist.g_loss)
    assert hist.snapshots[5].shape == (10, 1)
    G = MLPGenerator(2, 1, hidden=32, num_classes=2)
    D = MLPDiscriminator(1, hidden=32, num_classes=2)
    train_gan(G, D, data.to(device), labels=y.to(device), steps=400, lr=3e-3, progress=False)
    gen = torch.Generator().manual_seed(1)
    for k, mean in ((0, -3.0), (1, 3.0)):
        samples = G.sample(500, generator=gen, y=torch.full((500,), k))
        assert abs(samples.mean().item() - mean) < 0.5, (k, samples.mean().item())
    with pytest.raises(ValueError, match="conditional GAN needs"):
        train_gan(G, D, data, steps=1)
    with pytest.raises(ValueError, match="pack must be 1"):
        train_gan(G, MLPDiscriminator(2, num_classes=2), data, labels=y, steps=1, pack=2)
    with pytest.raises(ValueError, match="g_steps"):
        train_gan(G, D, data, labels=y, steps=1, g_steps=0)


def test_precision_recall_and_coverage():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
    same = precision_recall(real, fake)
    assert same.precision > 0.8 and same.recall > 0.8 and same.coverage > 0.8
    # a collapsed generator: every sample near one real point — precise, no recall or coverage
    collapsed = precision_recall(real, real[:1] + 0.01 * torch.randn(400, 2, generator=g))
    assert collapsed.precision > 0.9 and collapsed.recall < 0.1 and collapsed.coverage < 0.1
    # far-away samples: neither precise nor covering
    far = precision_recall(real, fake + 100.0)
    assert far.precision == 0.0 and far.recall == 0.0 and far.coverage == 0.0
    # hand-computable: real points 0, 1, 2, 10 on a line with k=1 have radii 1, 1, 1, 8
    line = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    pr = precision_recall(line, torch.tensor([[0.5], [5.0], [20.0], [30.0]]), k=1)
    assert pr.precision == 0.5  # 0.5 is within 0 and 1's balls, 5.0 within 10's (radius 8)
    assert pr.coverage == 0.75  # 0, 1 hold 0.5; 10 holds 5.0; 2's ball (radius 1) holds none
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(real[:3], fake)
    with pytest.raises(ValueError, match="same size along dim 1"):
        precision_recall(real, torch.zeros(10, 3))
