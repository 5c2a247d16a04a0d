"""Reference code of the robustness chapter's attacks.

PGD with one step, no random start and step size ε is FGSM; every attack stays in the
ε-ball and the valid pixel range; PGD is at least as strong as FGSM on a trained model;
adversarial training takes a step on adversarial inputs; the backdoor trigger and poisoning
touch what they say; bad inputs get clear errors.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zen import robust


def _model(device, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    )
    return net.double().to(device).eval()


def _data(device, batch=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (batch,), generator=g)
    return x.to(device), y.to(device)


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3])
def test_pgd_one_step_equals_fgsm(device, eps):
    model, (x, y) = _model(device), _data(device)
    step = eps if eps > 0 else 0.1  # with eps = 0 any step is projected back to x
    got = robust.pgd(model, x, y, eps, step, 1, random_start=False)
    assert torch.equal(got, robust.fgsm(model, x, y, eps))


def test_fgsm_matches_the_formula(device):
    model, (x, y) = _model(device), _data(device)
    got = robust.fgsm(model, x, y, 0.1)
    assert all(p.grad is None for p in model.parameters())  # only the input got a gradient
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y).backward()
    want = (x + 0.1 * xr.grad.sign()).clamp(0, 1)
    assert torch.equal(got, want)


@pytest.mark.parametrize("random_start", [True, False])
def test_pgd_stays_in_the_ball_and_the_box(device, random_start):
    model, (x, y) = _model(device), _data(device)
    eps = 0.1
    adv = robust.pgd(model, x, y, eps, 0.07, 7, random_start, torch.Generator().manual_seed(2))
    assert (adv - x).abs().max() <= eps + 1e-12
    assert adv.min() >= 0 and adv.max() <= 1
    assert not torch.equal(adv, x)


def test_projection_is_the_nearest_point():
    x = torch.tensor([[0.5, 0.95, 0.02]], dtype=torch.float64)
    z = torch.tensor([[0.9, 1.3, 0.01]], dtype=torch.float64)
    want = torch.tensor([[0.6, 1.0, 0.01]], dtype=torch.float64)
    assert torch.allclose(robust.project_linf(z, x, 0.1), want)


def test_pgd_is_at_least_as_strong_as_fgsm():
    torch.manual_seed(0)
    w = torch.randn(20, 3, dtype=torch.float64)
    x = torch.rand(200, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = (x @ w).argmax(1)

    def model(z):  # a fixed non-linear classifier that gets every clean point right
        return torch.tanh(z @ w) * 3 + (z @ w)

    for eps in (0.02, 0.05, 0.1):
        a_fgsm = robust.accuracy(model, robust.fgsm(model, x, y, eps), y)
        a_pgd = robust.accuracy(model, robust.pgd(model, x, y, eps, eps / 4, 20, False), y)
        assert a_pgd <= a_fgsm


def test_adversarial_training_step_moves_the_weights(device):
    model, (x, y) = _model(device), _data(device)
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = robust.adversarial_training_step(model, opt, x, y, 0.1, 0.05, 3)
    assert loss > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_backdoor_trigger_and_poisoning():
    x, y = _data("cpu", batch=40)
    xt = robust.add_trigger(x, 2)
    assert torch.all(xt[..., -2:, -2:] == 1) and torch.equal(xt[..., :-2, :], x[..., :-2, :])
    xp, yp, idx = robust.plant_backdoor(x, y, 0.1, 3, torch.Generator().manual_seed(0))
    assert len(idx) == 4 and torch.all(y[idx] != 3) and torch.all(yp[idx] == 3)
    rest = torch.ones(40, dtype=torch.bool)
    rest[idx] = False
    assert torch.equal(xp[rest], x[rest]) and torch.equal(yp[rest], y[rest])


def test_bad_input():
    model, (x, y) = _model("cpu"), _data("cpu")
    with pytest.raises(ValueError, match="eps must be >= 0"):
        robust.fgsm(model, x, y, -0.1)
    with pytest.raises(TypeError, match="eps must be a number"):
        robust.fgsm(model, x, y, "0.1")
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        robust.pgd(model, x, y, 0.1, 0.01, 0)
    with pytest.raises(ValueError, match="step_size must be positive"):
        robust.pgd(model, x, y, 0.1, 0.0, 3)
    with pytest.raises(ValueError, match="same size along dim 0"):
        robust.fgsm(model, x, y[:3], 0.1)
    with pytest.raises(TypeError, match="floating-point"):
        robust.fgsm(model, (x * 10).long(), y, 0.1)
    with pytest.raises(ValueError, match="lo < hi"):
        robust.fgsm(model, x, y, 0.1, bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="4-D"):
        robust.add_trigger(x.flatten(1))
    with pytest.raises(ValueError, match="must fit the image"):
        robust.add_trigger(x, 7)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\)"):
        robust.plant_backdoor(x, y, 1.5, 0)
