"""Tests for zen.peft (the PEFT chapter): LoRA and adapters."""

import copy

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


def _peft_pair(r=4, alpha=8, **kw):
    """A zen LoRA model and a peft-wrapped copy with the same (random, non-zero) adapter weights."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.Linear(16, 8))
    theirs = get_peft_model(
        copy.deepcopy(model), LoraConfig(r=r, lora_alpha=alpha, target_modules=["0", "2"], **kw)
    )
    kind = "dora" if kw.get("use_dora") else "lora"
    ours = peft.add_lora(model, r, alpha, rslora=kw.get("use_rslora", False), kind=kind)
    with torch.no_grad():
        for name in ("0", "2"):
            mine, ref = ours.get_submodule(name), theirs.base_model.model.get_submodule(name)
            mine.lora_B.normal_()
            ref.lora_A["default"].weight.copy_(mine.lora_A)
            ref.lora_B["default"].weight.copy_(mine.lora_B)
            if kind == "dora":
                mine.magnitude.mul_(torch.rand_like(mine.magnitude) + 0.5)
                ref.lora_magnitude_vector["default"].weight.copy_(mine.magnitude)
    return ours, theirs


@pytest.mark.parametrize("kw", [{}, {"use_rslora": True}, {"use_dora": True}])
def test_lora_matches_peft_outputs_and_merge(kw):
    pytest.importorskip("peft")
    ours, theirs = _peft_pair(r=3, alpha=5, **kw)
    x = torch.randn(6, 12)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
        merged = theirs.merge_and_unload()
        for name in ("0", "2"):
            ours.get_submodule(name).merge()
            torch.testing.assert_close(
                ours.get_submodule(name).base.weight, merged.get_submodule(name).weight,
                atol=1e-5, rtol=1e-5,
            )  # fmt: skip
        torch.testing.assert_close(ours(x), merged(x), atol=1e-5, rtol=1e-5)


def test_dora_starts_as_base_and_unmerges():
    torch.manual_seed(0)
    base = nn.Linear(10, 6)
    w0, x = base.weight.detach().clone(), torch.randn(4, 10)
    ref = base(x)
    dora = peft.DoRALinear(base, r=2)
    torch.testing.assert_close(dora(x), ref)
    with torch.no_grad():
        dora.lora_B.normal_()
    out = dora(x)
    dora.merge()
    torch.testing.assert_close(dora(x), out, atol=1e-5, rtol=1e-5)
    dora.unmerge()
    torch.testing.assert_close(base.weight, w0, atol=1e-5, rtol=1e-5)
    assert peft.trainable_parameters(dora) == 2 * (10 + 6) + 6


def test_qlora_uses_nf4_base_and_matches_lora_on_dequantized_weight():
    from zen.compress.nf4 import nf4_dequantize

    torch.manual_seed(0)
    base = nn.Linear(64, 32)
    q = peft.QLoRALinear(base, r=4, alpha=8)
    with torch.no_grad():
        q.lora_B.normal_()
    x = torch.randn(5, 64, requires_grad=True)
    w_hat = nf4_dequantize(q.weight_nf4)
    expect = x @ w_hat.T + base.bias + 2.0 * (x @ q.lora_A.T) @ q.lora_B.T
    y = q(x)
    torch.testing.assert_close(y, expect, atol=1e-5, rtol=1e-5)
    (g,) = torch.autograd.grad(y.sum(), x)
    (g_ref,) = torch.autograd.grad(expect.sum(), x)
    torch.testing.assert_close(g, g_ref, atol=1e-5, rtol=1e-5)
    assert q.base_bytes() == 64 * 32 // 2 + (64 * 32 // 64) * 4
    assert peft.trainable_parameters(q) == 4 * (64 + 32)


def test_prompt_tuning_equals_base_on_real_prefix():
    from zen.llama import Llama, LlamaConfig

    torch.manual_seed(0)
    lm = Llama(LlamaConfig(vocab_size=32, max_len=16, n_layers=1, n_heads=2, d_model=16))
    pt = peft.PromptTuned(lm, 3)
    idx, prefix = torch.randint(32, (2, 5)), torch.randint(32, (3,))
    with torch.no_grad():
        pt.prompt.copy_(lm.embed(prefix))
        full = lm(torch.cat([prefix.expand(2, -1), idx], dim=1))
        torch.testing.assert_close(pt(idx), full[:, 3:], atol=1e-5, rtol=1e-5)
    assert peft.trainable_parameters(pt) == 3 * 16


def test_lora_target_names_and_bad_input():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    assert peft.lora_target_names(model, ["2"]) == ["2"]
    with pytest.raises(ValueError, match="no nn.Linear named"):
        peft.lora_target_names(model, ["q_proj"])
    with pytest.raises(ValueError, match="kind must be one of"):
        peft.add_lora(model, kind="ia3")
    with pytest.raises(ValueError, match="r must be <="):
        peft.DoRALinear(nn.Linear(4, 3), r=5)
    with pytest.raises(TypeError, match="nn.Linear"):
        peft.QLoRALinear(nn.Conv1d(1, 1, 1))
    with pytest.raises(ValueError, match="block_size"):
        peft.QLoRALinear(nn.Linear(5, 3), r=1)  # 15 weights: no block of 64 divides them
    with pytest.raises(TypeError, match="embed"):
        peft.PromptTuned(model, 4)


def _small_llama(n_kv_heads: int = 2):
    from zen.llama import Llama, LlamaConfig

    cfg = LlamaConfig(vocab_size=32, max_len=16, n_layers=2, n_heads=4, n_kv_heads=n_kv_heads,
                      d_model=16, d_ff=32)  # fmt: skip
    return Llama(cfg).eval()


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_prefix_tuning_starts_as_the_base_model_reading_its_init_tokens(device, n_kv_heads):
    lm = _small_llama(n_kv_heads).to(device)
    idx, prefix = torch.randint(32, (2, 5), device=device), torch.randint(32, (3,))
    pt = peft.PrefixTuned(lm, 3, init_tokens=prefix)
    with torch.no_grad():
        full = lm(torch.cat([prefix.to(device).expand(2, -1), idx], dim=1))
        torch.testing.assert_close(pt(idx), full[:, 3:], atol=1e-5, rtol=1e-5)
    d_head = 16 // 4
    assert peft.trainable_parameters(pt) == 2 * 2 * n_kv_heads * 3 * d_head  # k and v per layer
    pt(idx).sum().backward()
    assert pt.prefix_k.grad.abs().sum() > 0 and lm.embed.weight.grad is None


def test_prefix_tuning_equals_peft_on_a_hugging_face_llama():
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from peft import PrefixTuningConfig, get_peft_model
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM

    from zen.llama import Llama

    torch.manual_seed(0)
    hf_cfg = HFLlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=48,
                           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=32)  # fmt: skip
    hf = LlamaForCausalLM(hf_cfg).eval()
    ours = Llama.from_hf(hf).eval()
    ref = get_peft_model(hf, PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    with torch.no_grad():
        ref.prompt_encoder["default"].embedding.weight.normal_()
    pt = peft.PrefixTuned(ours, 3)
    past = ref.get_prompt(batch_size=1)  # peft's own prefix as a cache, (1, h_kv, P, d_head)
    with torch.no_grad():
        pt.prefix_k.copy_(torch.cat([layer.keys for layer in past.layers]))
        pt.prefix_v.copy_(torch.cat([layer.values for layer in past.layers]))
        idx = torch.randint(40, (2, 7))
        torch.testing.assert_close(pt(idx), ref(input_ids=idx).logits, atol=1e-5, rtol=1e-4)
        assert (pt(idx) - ours(idx)).abs().max() > 1e-2  # the prefix does change the output


def test_prefix_tuning_bad_input():
    with pytest.raises(TypeError, match="zen Llama"):
        peft.PrefixTuned(nn.Linear(4, 4), 2)
    with pytest.raises(ValueError, match=r"init_tokens must be \(2,\)"):
        peft.PrefixTuned(_small_llama(), 2, init_tokens=torch.zeros(3, dtype=torch.long))
