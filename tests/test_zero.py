"""ZeRO stages 0–3 from scratch: equal to Adam, and each rank's measured memory as ZeRO says.

The workers are gloo CPU processes; memory is counted by :class:`zen.parallel.memory.MemoryMeter`.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zen.parallel import launch
from zen.parallel.memory import MemoryMeter
from zen.parallel.zero import Buckets, ZeroAdam, zero_memory_breakdown
from zen.parallel.zero_grads import Zero2Adam
from zen.parallel.zero_params import Zero3Adam

WIDTH, DEPTH, STEPS = 16, 6, 3


def _model() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(5, WIDTH), nn.Tanh()]
    for _ in range(DEPTH):
        layers += [nn.Linear(WIDTH, WIDTH), nn.Tanh()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, 3))


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(24, 5, generator=g), torch.randint(0, 3, (24,), generator=g)


def _optimizer(model: nn.Module, stage: int):
    if stage < 2:
        return ZeroAdam(model.parameters(), stage, lr=0.01, bucket_numel=WIDTH * WIDTH)
    if stage == 2:
        return Zero2Adam(model.parameters(), lr=0.01, bucket_numel=WIDTH * WIDTH)
    return Zero3Adam(model, [m for m in model if isinstance(m, nn.Linear)], lr=0.01)


def _train(stage: int) -> tuple[list[torch.Tensor], dict[str, int]]:
    r, p = dist.get_rank(), dist.get_world_size()
    model, (x, y) = _model(), _data()
    meter = MemoryMeter(lambda: opt.tensors()).watch(model)  # before the optimizer's hooks
    opt = _optimizer(model, stage)
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(x.chunk(p)[r]), y.chunk(p)[r]).backward()
        opt.step()
        meter.sample()
    full = opt.full_parameters() if stage == 3 else [q.detach().clone() for q in model.parameters()]
    return full, meter.peak


@pytest.fixture(scope="module")
def reference() -> list[torch.Tensor]:
    model, (x, y) = _model(), _data()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [q.detach() for q in model.parameters()]


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_every_stage_equals_adam_and_measures_as_zero_says(stage, reference):
    p = 3
    out = launch(_train, p, stage)
    n = sum(q.numel() for q in reference)
    layers = [m for m in _model() if isinstance(m, nn.Linear)]
    largest = max(sum(q.numel() for q in m.parameters()) for m in layers)
    # per-bucket padding to a multiple of p: at most p - 1 elements per bucket (≤ 2 per layer)
    pad = (p - 1) * len(layers)
    for params, peak in out:
        for a, b in zip(params, reference):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        zero = zero_memory_breakdown(n, p, stage, optimizer_bytes=8, param_bytes=4, grad_bytes=4)
        transient = 4 * 3 * largest  # one bucket being filled + one gradient, or one layer
        for kind, expected in zero.items():
            sharded = (kind == "optim" and stage >= 1) or (kind == "grads" and stage >= 2)
            sharded |= kind == "params" and stage == 3
            per_elem = 8 if kind == "optim" else 4
            low = expected
            high = expected + per_elem * pad / (p if sharded else 1)
            if kind != "optim" and sharded:
                high += transient
            assert low <= peak[kind] <= high, (stage, kind, peak[kind], low, high)
    if stage >= 2:
        assert out[0][1]["grads"] < 0.6 * 4 * n  # the full gradient never lives on one rank
    if stage == 3:
        assert out[0][1]["params"] < 0.6 * 4 * n


def test_buckets_make_parameters_views_of_padded_flat_buffers():
    model = _model()
    before = [q.detach().clone() for q in model.parameters()]
    buckets = Buckets.by_size(model.parameters(), 40, world=4, rank=1)
    assert all(f.numel() % 4 == 0 for f in buckets.flat)
    for q, old in zip(model.parameters(), before):
        assert torch.equal(q, old)
        b, _ = buckets.slot[q]
        assert q.untyped_storage().data_ptr() == buckets.flat[b].untyped_storage().data_ptr()
    assert buckets.piece(0) == slice(buckets.flat[0].numel() // 4, buckets.flat[0].numel() // 2)
    with pytest.raises(ValueError, match="bucket_numel"):
        Buckets.by_size(model.parameters(), 0, world=4, rank=0)


def _bad(kind: str) -> None:
    model = _model()
    if kind == "stage":
        ZeroAdam(model.parameters(), stage=2)
    elif kind == "units":
        Zero3Adam(model, [model[0]])
    else:
        opt = Zero2Adam(model.parameters())
        opt.step()  # no backward: no gradients


@pytest.mark.parametrize(
    "kind, message",
    [
        ("stage", "stages 0 and 1"),
        ("units", "every trainable parameter"),
        ("nograd", "did not receive every gradient"),
    ],
)
def test_zero_optimizers_reject_misuse(kind, message):
    with pytest.raises(RuntimeError, match=message):
        launch(_bad, 2, kind, timeout=20)


def test_zero_optimizers_need_a_process_group():
    with pytest.raises(RuntimeError, match="process group"):
        ZeroAdam(_model().parameters(), stage=1)
    with pytest.raises(RuntimeError, match="process group"):
        Zero2Adam(_model().parameters())


def test_memory_meter_counts_shared_storage_once_and_rejects_unknown_kinds():
    flat = torch.zeros(10)
    views = [flat[:4], flat[4:]]
    meter = MemoryMeter(lambda: {"params": views, "grads": [torch.zeros(3)]})
    meter.sample()
    assert meter.peak == {"params": 40, "grads": 12, "optim": 0}
    with pytest.raises(ValueError, match="kind"):
        MemoryMeter(lambda: {"weights": views}).current()
