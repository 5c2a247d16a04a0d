"""zen.lm: the warm-up + cosine schedule and AdamW's decay groups."""

from __future__ import annotations

import math

import pytest
import torch

from zen.gpt import GPT, GPTConfig
from zen.lm import adamw, decay_groups, warmup_cosine, warmup_cosine_schedule


@pytest.mark.parametrize("warmup,total,min_ratio", [(1, 2, 0.0), (5, 40, 0.1), (13, 100, 0.3)])
def test_schedule_equals_pytorch_builtins(warmup, total, min_ratio):
    """Linear warm-up then cosine: PyTorch's LinearLR followed by CosineAnnealingLR."""
    lr = 0.5
    ours = warmup_cosine_schedule(
        torch.optim.SGD([torch.zeros(1)], lr=lr), warmup, total, min_ratio
    )
    opt = torch.optim.SGD([torch.zeros(1)], lr=lr)
    ramp = torch.optim.lr_scheduler.LinearLR(
        opt, start_factor=1 / warmup, end_factor=1.0, total_iters=max(warmup - 1, 1)
    )
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt, T_max=total - warmup, eta_min=min_ratio * lr
    )
    theirs = torch.optim.lr_scheduler.SequentialLR(opt, [ramp, decay], milestones=[warmup])
    for step in range(total + 1):
        assert ours.get_last_lr()[0] == pytest.approx(theirs.get_last_lr()[0], abs=1e-12), step
        assert ours.get_last_lr()[0] == pytest.approx(
            lr * warmup_cosine(step, warmup, total, min_ratio)
        )
        ours.optimizer.step(), opt.step()
        ours.step(), theirs.step()


def test_schedule_shape():
    factors = [warmup_cosine(s, 10, 110, 0.1) for s in range(130)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == 1.0  # linear warm-up to the peak
    assert all(a >= b for a, b in zip(factors[9:], factors[10:]))  # then never rises
    assert factors[60] == pytest.approx(0.55)  # halfway down the cosine: the mean of 1 and 0.1
    assert factors[110] == pytest.approx(0.1) and factors[129] == pytest.approx(0.1)  # the floor


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(warmup_steps=10, total_steps=10), "smaller than total_steps"),
        (dict(warmup_steps=0, total_steps=10), "warmup_steps must be a positive integer"),
        (dict(warmup_steps=2, total_steps=10, min_ratio=1.5), "min_ratio must be in"),
        (dict(step=-1, warmup_steps=2, total_steps=10), "step must be >= 0"),
    ],
)
def test_schedule_bad_arguments(kwargs, match):
    args = dict(step=0) | kwargs
    with pytest.raises(ValueError, match=match):
        warmup_cosine(**args)


def test_decay_groups_split_matrices_from_vectors(device):
    model = GPT(GPTConfig(vocab_size=50, max_len=16, n_layers=2, n_heads=2, d_model=16)).to(device)
    decay, no_decay = decay_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and all(
        p.ndim == 1 for p in no_decay["params"]
    )
    grouped = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each once, ties once
    assert any(p is model.wte.weight for p in decay["params"])  # the tied embedding / head
    opt = adamw(model, lr=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]
    assert opt.param_groups[0]["betas"] == (0.9, 0.95)


def test_decay_only_touches_matrices():
    """One AdamW step with zero gradients: matrices shrink by lr·λ, vectors do not move."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    before = [p.detach().clone() for p in model.parameters()]
    opt = adamw(model, lr=0.1, weight_decay=0.5)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, b in zip(model.parameters(), before):
        expected = b * (1 - 0.1 * 0.5) if p.ndim >= 2 else b
        assert torch.allclose(p.detach(), expected)


def test_decay_groups_bad_input():
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        decay_groups([torch.zeros(2)], 0.1)
    with pytest.raises(ValueError, match="weight_decay must be in"):
        decay_groups(torch.nn.Linear(2, 2), -0.1)
    with pytest.raises(ValueError, match="lr must be positive"):
        adamw(torch.nn.Linear(2, 2), lr=0.0)
    assert math.isfinite(warmup_cosine(10**6, 1, 2))
