"""Tests for zen.peft (the PEFT chapter): LoRA and adapters."""

import pytest
import torch
from torch import nn

from zen import peft


def test_lora_starts_as_base_and_counts(device):
    torch.manual_seed(0)
    base = nn.Linear(32, 16).to(device)
    x = torch.randn(3, 5, 32, device=device)
    ref = base(x)
    lora = peft.LoRALinear(base, r=4, alpha=8)
    torch.testing.assert_close(lora(x), ref)  # B = 0
    assert peft.trainable_parameters(lora) == 4 * (32 + 16)
    assert lora.lora_B.abs().sum() == 0 and lora.lora_A.abs().sum() > 0


def test_lora_equals_dense_update_and_merge_roundtrip(device):
    torch.manual_seed(0)
    base = nn.Linear(32, 16).to(device)
    w0 = base.weight.detach().clone()
    lora = peft.LoRALinear(base, r=4, alpha=16)
    with torch.no_grad():
        lora.lora_B.normal_()
    x = torch.randn(7, 32, device=device)
    w = w0 + (16 / 4) * lora.lora_B @ lora.lora_A
    expect = x @ w.T + base.bias
    unmerged = lora(x)
    torch.testing.assert_close(unmerged, expect, atol=1e-4, rtol=1e-4)
    lora.merge()
    torch.testing.assert_close(lora(x), unmerged, atol=1e-4, rtol=1e-4)
    lora.unmerge()
    torch.testing.assert_close(base.weight, w0, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="not merged"):
        lora.unmerge()


def test_lora_gradients_only_on_factors():
    torch.manual_seed(0)
    lora = peft.LoRALinear(nn.Linear(8, 8), r=2)
    lora(torch.randn(4, 8)).sum().backward()
    assert lora.base.weight.grad is None and lora.lora_A.grad is not None
    assert lora.lora_A.grad.abs().sum() == 0  # B = 0 blocks A's gradient at step 0
    assert lora.lora_B.grad.abs().sum() > 0


def test_add_lora_freezes_everything_else():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    peft.add_lora(model, r=2, names=("0",))
    assert isinstance(model[0], peft.LoRALinear) and type(model[2]) is nn.Linear
    assert peft.trainable_parameters(model) == 2 * (8 + 16)


def test_adapter_identity_at_init(device):
    ad = peft.Adapter(32, 4).to(device)
    h = torch.randn(2, 3, 32, device=device)
    torch.testing.assert_close(ad(h), h)
    assert peft.trainable_parameters(ad) == 32 * 4 + 4 + 4 * 32 + 32


def test_peft_bad_input():
    with pytest.raises(ValueError, match="r must be <="):
        peft.LoRALinear(nn.Linear(4, 3), r=4)
    with pytest.raises(ValueError, match="r must be a positive"):
        peft.LoRALinear(nn.Linear(4, 3), r=0)
    with pytest.raises(TypeError, match="nn.Linear"):
        peft.LoRALinear(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="alpha"):
        peft.LoRALinear(nn.Linear(4, 4), r=2, alpha=0)
    with pytest.raises(ValueError, match="bottleneck"):
        peft.Adapter(8, 16)
    with pytest.raises(ValueError, match="matched"):
        peft.add_lora(nn.Sequential(nn.ReLU()))
