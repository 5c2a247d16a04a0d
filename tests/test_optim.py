"""zen.optim: every optimiser takes torch.optim's steps; the schedule; clipping; bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from zen import optim

STEPS = 120
CASES = {  # name: (zen class, torch class, keyword arguments)
    "sgd": (optim.SGD, torch.optim.SGD, dict(lr=0.05)),
    "sgd-momentum-wd": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=1e-2)),
    "sgd-dampening": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, dampening=0.3)),
    "sgd-nesterov": (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adagrad": (optim.AdaGrad, torch.optim.Adagrad, dict(lr=0.1)),
    "adagrad-all": (
        optim.AdaGrad,
        torch.optim.Adagrad,
        dict(lr=0.1, lr_decay=1e-2, weight_decay=1e-2, initial_accumulator_value=0.1),
    ),
    "rmsprop": (optim.RMSProp, torch.optim.RMSprop, dict(lr=1e-2)),
    "rmsprop-centered-momentum": (
        optim.RMSProp,
        torch.optim.RMSprop,
        dict(lr=1e-3, alpha=0.9, momentum=0.5, centered=True, weight_decay=1e-2),
    ),
    "adam": (optim.Adam, torch.optim.Adam, dict(lr=1e-2)),
    "adam-l2": (optim.Adam, torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=0.1)),
    "adamw": (optim.AdamW, torch.optim.AdamW, dict(lr=1e-2)),
    "adamw-wd": (optim.AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.3, eps=1e-6)),
}


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def _train(model: nn.Module, opt: torch.optim.Optimizer, x, y) -> list[float]:
    losses = []
    for step in range(STEPS):
        batch = slice(8 * (step % 4), 8 * (step % 4) + 8)  # different minibatches
        loss = ((model(x[batch]) - y[batch]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", list(CASES))
def test_each_optimiser_takes_torchs_steps_in_float64(name):
    ours, theirs, kwargs = CASES[name]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    a, b = _model(1), _model(1)
    la = _train(a, ours(a.parameters(), **kwargs), x, y)
    _train(b, theirs(b.parameters(), foreach=False, **kwargs), x, y)
    assert sum(la[-4:]) < sum(la[:4])  # it trains (the same four minibatches)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-12)


def test_param_groups_and_state_dict_round_trip():
    model = _model(0)

    def groups():
        return [
            {"params": model[0].parameters(), "weight_decay": 0.0},
            {"params": model[2].parameters()},
        ]

    opt = optim.AdamW(groups())
    assert [gr["weight_decay"] for gr in opt.param_groups] == [0.0, 1e-2]
    model(torch.randn(4, 5, dtype=torch.float64)).sum().backward()
    opt.step()
    fresh = optim.AdamW(groups())
    fresh.load_state_dict(opt.state_dict())
    assert fresh.state_dict()["state"][0]["t"] == 1


def test_adam_coupled_l2_differs_from_decoupled_decay():
    # with weight decay, Adam's L2 term is divided by √v̂ and AdamW's shrinkage is not: they part
    p1, p2 = (torch.ones(3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    o1, o2 = optim.Adam([p1], lr=0.1, weight_decay=0.5), optim.AdamW([p2], lr=0.1, weight_decay=0.5)
    for _ in range(5):
        for p, o in ((p1, o1), (p2, o2)):
            o.zero_grad()
            (p * torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)).sum().backward()
            o.step()
    assert (p1 - p2).abs().min() > 1e-3


def test_cosine_schedule_end_points_and_shape():
    kw = dict(max_lr=1.0, min_lr=0.1, warmup=10, total=110)
    assert optim.cosine_schedule(0, **kw) == 0.0
    assert optim.cosine_schedule(5, **kw) == pytest.approx(0.5)
    assert optim.cosine_schedule(10, **kw) == pytest.approx(1.0)
    assert optim.cosine_schedule(60, **kw) == pytest.approx(0.55)  # half-way: the mean
    assert optim.cosine_schedule(110, **kw) == pytest.approx(0.1)
    assert optim.cosine_schedule(500, **kw) == 0.1
    lrs = [optim.cosine_schedule(s, **kw) for s in range(10, 111)]
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))  # decreasing after warm-up
    # without warm-up it starts at max_lr and equals PyTorch's CosineAnnealingLR up to T_max
    # (beyond it PyTorch's cosine rises again; this schedule stays at min_lr)
    p = torch.zeros(1, requires_grad=True)
    sgd = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(sgd, T_max=50, eta_min=0.1)
    for s in range(51):
        assert optim.cosine_schedule(s, 1.0, 0.1, 0, 50) == pytest.approx(sgd.param_groups[0]["lr"])
        sgd.step()
        ref.step()


def test_clip_grad_norm_equals_torch():
    a, b = _model(2), _model(2)
    x = torch.randn(16, 5, dtype=torch.float64)
    for m in (a, b):
        (m(x) ** 2).sum().backward()
    na = optim.clip_grad_norm(a.parameters(), 0.5)
    nb = nn.utils.clip_grad_norm_(b.parameters(), 0.5)
    torch.testing.assert_close(na, nb)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad)
    total = math.sqrt(sum(float((p.grad**2).sum()) for p in a.parameters()))
    assert total == pytest.approx(0.5, rel=1e-5)
    # below the threshold nothing changes
    before = [p.grad.clone() for p in a.parameters()]
    optim.clip_grad_norm(a.parameters(), 10.0)
    assert all(torch.equal(g, p.grad) for g, p in zip(before, a.parameters()))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda ps: optim.SGD(ps, lr=-1.0), "lr must be in"),
        (lambda ps: optim.SGD(ps, momentum=1.5), "momentum must be in"),
        (lambda ps: optim.SGD(ps, nesterov=True), "nesterov=True needs momentum"),
        (lambda ps: optim.Adam(ps, betas=(0.9, 1.0)), r"betas\[1\] must be in \[0, 1\)"),
        (lambda ps: optim.AdamW(ps, weight_decay=-0.1), "weight_decay must be in"),
        (lambda ps: optim.AdaGrad(ps, eps=0.0), "eps must be positive"),
        (lambda ps: optim.RMSProp(ps, alpha=2.0), "alpha must be in"),
    ],
)
def test_bad_hyperparameters_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make([torch.zeros(2, requires_grad=True)])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(step=-1), "step must be a non-negative integer"),
        (dict(min_lr=2.0), "min_lr <= max_lr"),
        (dict(warmup=200), "warmup < total"),
    ],
)
def test_cosine_schedule_rejects_bad_input(kwargs, match):
    args = dict(step=0, max_lr=1.0, min_lr=0.0, warmup=10, total=100) | kwargs
    with pytest.raises(ValueError, match=match):
        optim.cosine_schedule(**args)


def test_clip_grad_norm_rejects_a_non_positive_norm():
    with pytest.raises(ValueError, match="max_norm must be positive"):
        optim.clip_grad_norm([torch.zeros(1)], 0.0)
