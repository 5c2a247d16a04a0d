"""Reference code of the privacy chapter, checked against Opacus.

Per-sample gradients from ``torch.func`` equal a loop over the examples; DP-SGD equals
Opacus's ``DPOptimizer`` step with zero noise and, bit for bit up to float rounding, with
noise drawn from the same seeded generator; the RDP accountant's ε equals Opacus's
``RDPAccountant`` to 1e-10 relative; the loss-threshold scores are minus the losses; bad
inputs get clear errors.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zen import privacy


def _model(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4)
    )


def _data(device="cpu", batch=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 6, 6, generator=g)
    return x.to(device), torch.randint(0, 4, (batch,), generator=g).to(device)


def test_per_sample_grads_equal_a_loop(device):
    model, (x, y) = _model().to(device), _data(device)
    grads = privacy.per_sample_grads(model, x, y)
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for name, p in model.named_parameters():
            assert torch.allclose(grads[name][i], p.grad, atol=1e-6), name


def test_clipping_bounds_every_norm():
    model, (x, y) = _model(), _data()
    grads = privacy.per_sample_grads(model, x, y)
    clipped = privacy.clip_per_sample(grads, 0.05)
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in clipped.values()], 1).norm(dim=1)
    assert torch.all(norms <= 0.05 + 1e-6)
    big = privacy.clip_per_sample(grads, 1e6)  # a large bound leaves them (almost) unchanged
    assert all(torch.allclose(big[k], grads[k]) for k in grads)


def _opacus_step(sigma, clip, seed, x, y):
    opacus = pytest.importorskip("opacus")
    model = opacus.GradSampleModule(_model())
    opt = opacus.optimizers.DPOptimizer(
        torch.optim.SGD(model.parameters(), lr=0.5),
        noise_multiplier=sigma,
        max_grad_norm=clip,
        expected_batch_size=len(x),
        generator=torch.Generator().manual_seed(seed),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        F.cross_entropy(model(x), y).backward()
    opt.step()  # replaces .grad by the clipped, noised mean
    grads = {k: p.grad.clone() for k, p in model._module.named_parameters()}
    return model._module, grads


@pytest.mark.parametrize("sigma", [0.0, 1.3])
def test_dp_sgd_equals_opacus(sigma):
    x, y = _data(batch=16)
    ref_model, ref_grads = _opacus_step(sigma, 0.2, 7, x, y)
    model = _model()
    gen = torch.Generator().manual_seed(7)
    ours = privacy.dp_sgd_grads(model, x, y, 0.2, sigma, len(x), torch.Generator().manual_seed(7))
    privacy.dp_sgd_step(
        model, torch.optim.SGD(model.parameters(), lr=0.5), x, y, 0.2, sigma, len(x), gen
    )
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        assert torch.allclose(ours[name], ref_grads[name], atol=1e-7), name
        assert torch.allclose(p, q, atol=1e-7), name


def test_dp_sgd_noise_statistics():
    x, y = _data(batch=8)
    model = _model()
    clean = privacy.dp_sgd_grads(model, x, y, 1.0, 0.0)
    noisy = privacy.dp_sgd_grads(model, x, y, 1.0, 2.0, 8, torch.Generator().manual_seed(0))
    noise = torch.cat([(noisy[k] - clean[k]).flatten() for k in clean]) * 8  # N(0, (σC)²)
    assert abs(noise.mean().item()) < 0.2
    assert abs(noise.std().item() - 2.0) < 0.1


@pytest.mark.parametrize("q,sigma,steps", [(0.05, 1.0, 500), (0.01, 0.7, 2000), (1.0, 4.0, 10)])
def test_accountant_equals_opacus(q, sigma, steps):
    accountants = pytest.importorskip("opacus.accountants")
    orders = list(range(2, 64))
    acc = accountants.RDPAccountant()
    acc.history = [(sigma, q, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = acc.get_epsilon(1e-5, alphas=orders)
    assert math.isclose(privacy.epsilon(q, sigma, steps, 1e-5, orders), ref, rel_tol=1e-10)


def test_accountant_properties():
    assert privacy.epsilon(0.01, 1.0, 100, 1e-5) < privacy.epsilon(0.01, 1.0, 1000, 1e-5)
    assert privacy.epsilon(0.01, 2.0, 100, 1e-5) < privacy.epsilon(0.01, 1.0, 100, 1e-5)
    # q = 1 is the plain Gaussian mechanism: RDP(α) = α / (2σ²)
    assert privacy.rdp_subsampled_gaussian(1.0, 2.0, [2, 5]) == [2 / 8, 5 / 8]


def test_poisson_batch_and_membership_scores():
    idx = privacy.poisson_batch(10_000, 0.1, torch.Generator().manual_seed(0))
    assert 900 < len(idx) < 1100 and torch.all(idx[1:] > idx[:-1])
    model, (x, y) = _model(), _data()
    loss = F.cross_entropy(model(x), y, reduction="none")
    assert torch.allclose(privacy.membership_scores(model, x, y), -loss.detach())


def test_bad_input():
    model, (x, y) = _model(), _data()
    with pytest.raises(ValueError, match="max_norm must be positive"):
        privacy.dp_sgd_grads(model, x, y, 0.0, 1.0)
    with pytest.raises(ValueError, match="noise_multiplier must be >= 0"):
        privacy.dp_sgd_grads(model, x, y, 1.0, -1.0)
    with pytest.raises(ValueError, match="same size along dim 0"):
        privacy.per_sample_grads(model, x, y[:3])
    with pytest.raises(ValueError, match=r"sampling rate must be in \(0, 1\]"):
        privacy.epsilon(0.0, 1.0, 10, 1e-5)
    with pytest.raises(ValueError, match=r"sampling rate must be in \(0, 1\]"):
        privacy.poisson_batch(10, 1.5)
    with pytest.raises(ValueError, match=r"delta must be in \(0, 1\)"):
        privacy.epsilon(0.1, 1.0, 10, 1.0)
    with pytest.raises(ValueError, match="noise_multiplier must be positive"):
        privacy.epsilon(0.1, 0.0, 10, 1e-5)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        privacy.epsilon(0.1, 1.0, 0, 1e-5)
    with pytest.raises(ValueError, match="orders must be integers >= 2"):
        privacy.epsilon(0.1, 1.0, 10, 1e-5, orders=[1.5, 3])
    with pytest.raises(ValueError, match="same length"):
        privacy.rdp_to_epsilon([2, 3], [0.1], 1e-5)
