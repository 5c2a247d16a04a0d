"""zen.parallel.calculator: layouts validated, activation memory as measured, the bubble."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from zen.parallel.calculator import activation_bytes_per_layer, estimate
from zen.parallel.pipeline import bubble_fraction


class _Block(nn.Module):
    """A GPT block with dropout, written out so every saved tensor is visible."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.fc1, self.fc2 = nn.Linear(d_model, 4 * d_model), nn.Linear(4 * d_model, d_model)

    def core(self, q, k, v):
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        return F.dropout(scores.softmax(-1), self.dropout) @ v

    def forward(self, x, selective: bool = False):
        b, s, h = x.shape
        qkv = self.qkv(self.ln1(x)).view(b, s, 3, self.n_heads, h // self.n_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (b, heads, s, d_head)
        ctx = (
            checkpoint(self.core, q, k, v, use_reentrant=True) if selective else self.core(q, k, v)
        )
        x = x + F.dropout(self.proj(ctx.transpose(1, 2).reshape(b, s, h)), self.dropout)
        return x + F.dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)))), self.dropout)


def _saved_bytes(fn, params) -> int:
    weights = {p.untyped_storage().data_ptr() for p in params}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(saved.values())


@pytest.mark.parametrize("s, b, h, a", [(16, 2, 32, 4), (8, 3, 24, 2), (12, 1, 16, 8)])
@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
def test_activation_formula_equals_the_saved_tensors(s, b, h, a, recompute):
    block = _Block(h, a).to(torch.bfloat16)
    x = torch.randn(b, s, h, dtype=torch.bfloat16, requires_grad=True)
    if recompute == "full":
        got = _saved_bytes(lambda: checkpoint(block, x, use_reentrant=True), block.parameters())
    else:
        run = lambda: block(x, selective=recompute == "selective")  # noqa: E731
        got = _saved_bytes(run, block.parameters())
    # PyTorch's CPU dropout keeps a 2-byte mask; LayerNorm keeps mean and 1/std per token
    ln_stats = 0 if recompute == "full" else 2 * 2 * b * s * 2
    expected = activation_bytes_per_layer(s, b, h, a, recompute=recompute, mask_bytes=2)
    assert got == expected + ln_stats


def test_activation_formula_matches_the_papers_table_2():
    s, b, h, a, t = 2048, 1, 12288, 96, 8  # GPT-3 175B row of Korthikanti et al.
    sbh = s * b * h
    core = 5 * a * s / h
    assert activation_bytes_per_layer(s, b, h, a) == sbh * (34 + core)
    assert activation_bytes_per_layer(s, b, h, a, tp=t) == sbh * (10 + 24 / t + core / t)
    sp = activation_bytes_per_layer(s, b, h, a, tp=t, sequence_parallel=True)
    assert sp == pytest.approx(sbh * (34 / t + core / t))
    selective = activation_bytes_per_layer(
        s, b, h, a, tp=t, sequence_parallel=True, recompute="selective"
    )
    assert selective == pytest.approx(sbh * 34 / t)
    assert activation_bytes_per_layer(s, b, h, a, tp=t, recompute="full") == 2 * sbh


def test_estimate_adds_activations_and_the_bubble():
    plain = estimate()  # 7.5 B, ZeRO-3 over 64 devices: Table 1's 1.875 GB of model states
    assert plain["model_states_gb"] == pytest.approx(1.875)
    assert plain["bubble"] == 0
    assert plain["comm_gb_per_step"] == pytest.approx(3 * 63 / 64 * 15)
    assert plain["total_gb"] == pytest.approx(plain["model_states_gb"] + plain["activations_gb"])
    piped = estimate(dp=8, pp=8, num_micro=8)
    assert piped["bubble"] == pytest.approx(bubble_fraction(8, 8))
    full = estimate(recompute="full")
    assert full["activations_gb"] == pytest.approx(36 * 2 * 2048 * 4096 / 1e9)
    assert full["activations_gb"] < estimate(recompute="selective")["activations_gb"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"pp": 64}, "pp=64 pipeline stages cannot exceed the model's n_layers=36"),
        ({"tp": 64}, "tp=64 exceeds gpus_per_node=8"),
        ({"tp": 3, "gpus_per_node": 4}, "tp=3 must divide n_heads=32"),
        ({"n_heads": 30}, "n_heads=30 must divide d_model=4096"),
        ({"dp": 0}, "dp"),
        ({"num_micro": 0}, "num_micro"),
        ({"zero_stage": 4}, "ZeRO stage"),
        ({"recompute": "some"}, "recompute must be one of"),
        ({"bandwidth_gb_s": 0}, "bandwidth_gb_s"),
    ],
)
def test_estimate_refuses_impossible_layouts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate(**kwargs)
