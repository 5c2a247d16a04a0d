"""zen.gpt: the GPT model, its KV cache, GPT-2 weight loading and the FLOP/parameter accounting."""

from __future__ import annotations

import pytest
import torch

from zen.gpt import (
    GPT,
    GPTConfig,
    count_parameters,
    flops_per_token,
    lm_loss,
    lm_windows,
    random_windows,
)
from zen.train import evaluate_loss

TINY = dict(vocab_size=61, max_len=24, n_layers=2, n_heads=4, d_model=32)


def hf_gpt2(seed: int = 0, **overrides):
    """A randomly initialised Hugging Face GPT-2 (no download), dropout off."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = dict(
        vocab_size=101,
        n_positions=40,
        n_embd=48,
        n_layer=3,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    cfg.update(overrides)
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(**cfg)).eval()


def test_forward_shape_and_dtype(device):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).to(device)
    idx = torch.randint(0, TINY["vocab_size"], (3, 10), device=device)
    logits = model(idx)
    assert logits.shape == (3, 10, TINY["vocab_size"]) and logits.dtype == torch.float32
    assert logits.device.type == device.type


def test_causality():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).eval()
    idx = torch.randint(0, TINY["vocab_size"], (1, 12))
    changed = idx.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % TINY["vocab_size"]
    # positions before the change cannot see it
    assert torch.allclose(model(idx)[:, :8], model(changed)[:, :8], atol=1e-6)
    assert not torch.allclose(model(idx)[:, 8:], model(changed)[:, 8:], atol=1e-3)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"n_inner": 80},
        {"activation_function": "gelu"},
        {"n_layer": 1, "n_head": 1, "n_embd": 16},
    ],
)
def test_from_hf_logits_match(overrides):
    hf = hf_gpt2(**overrides)
    model = GPT.from_hf(hf).eval()
    idx = torch.randint(
        0, hf.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        assert torch.allclose(model(idx), hf(idx).logits, atol=1e-5, rtol=0)
    assert model.num_parameters() == sum(p.numel() for p in hf.parameters())
    assert model.lm_head.weight is model.wte.weight


def test_from_hf_untied_head():
    hf = hf_gpt2(tie_word_embeddings=False)
    model = GPT.from_hf(hf).eval()
    idx = torch.randint(0, 101, (1, 9))
    with torch.no_grad():
        assert torch.allclose(model(idx), hf(idx).logits, atol=1e-5, rtol=0)


def test_from_hf_rejects_unsupported():
    with pytest.raises(ValueError, match="scale_attn_by_inverse_layer_idx"):
        GPT.from_hf(hf_gpt2(scale_attn_by_inverse_layer_idx=True))
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        GPT.from_hf(torch.nn.Linear(2, 2))


def test_kv_cache_chunks_equal_full_forward():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).double().eval()
    idx = torch.randint(0, TINY["vocab_size"], (2, 20))
    cache = model.new_cache()
    pieces = [model(idx[:, a:b], cache=cache) for a, b in [(0, 7), (7, 8), (8, 15), (15, 20)]]
    assert [len(c) for c in cache] == [20] * TINY["n_layers"]
    assert cache[0].k.shape == (2, TINY["n_heads"], 20, TINY["d_model"] // TINY["n_heads"])
    assert torch.allclose(torch.cat(pieces, dim=1), model(idx), atol=1e-12)


@pytest.mark.parametrize(
    "kwargs", [dict(temperature=0), dict(temperature=0.8, top_k=5), dict(top_p=0.9)]
)
def test_cached_generation_equals_uncached(device, kwargs):
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).double().to(device)
    prompt = torch.randint(0, TINY["vocab_size"], (2, 5), device=device)
    runs = []
    for use_cache in (True, False):
        g = torch.Generator(device=device).manual_seed(3)
        # 30 new tokens run past max_len=24: the cropped window must also agree
        runs.append(model.generate(prompt, 30, use_cache=use_cache, generator=g, **kwargs))
    assert runs[0].shape == (2, 35)
    assert torch.equal(runs[0][:, :5], prompt) and torch.equal(runs[0], runs[1])


def test_generate_restores_training_mode():
    model = GPT(GPTConfig(**TINY)).train()
    model.generate(torch.zeros(1, 1, dtype=torch.long), 2)
    assert model.training


def test_count_parameters_matches_modules():
    for cfg in [GPTConfig(**TINY), GPTConfig(**TINY, bias=False, tie_weights=False, d_ff=50)]:
        assert count_parameters(cfg) == GPT(cfg).num_parameters()
        assert count_parameters(cfg, include_position=False) == GPT(cfg).num_parameters(
            include_position=False
        )


def test_gpt2_small_parameter_count():
    from transformers import GPT2Config

    cfg = GPTConfig.from_hf(GPT2Config())  # the published GPT-2 small sizes
    assert count_parameters(cfg) == 124_439_808
    with torch.device("meta"):  # no memory is allocated
        assert GPT(cfg).num_parameters() == 124_439_808


def test_flops_per_token_matches_flop_counter():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    cfg = GPTConfig(vocab_size=128, max_len=32, n_layers=2, n_heads=4, d_model=64)
    model = GPT(cfg)
    x = torch.randint(0, 128, (2, 32))
    # the math backend runs attention as batched matmuls, which the counter sees
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        lm_loss(model(x), x).backward()
    measured = counter.get_total_flops() / x.numel()
    # the counter counts matrix products only; the formula also charges 6 FLOPs to every
    # bias and LayerNorm parameter — take those out and the two agree exactly
    vectors = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 1)
    assert measured == flops_per_token(cfg) - 6 * vectors


def test_random_windows_and_evaluate():
    ids = torch.arange(100)
    x, y = random_windows(ids, 4, 8, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8) and torch.equal(y, x + 1)
    val = lm_windows(ids, 8)
    assert (
        val.x.shape == (12, 8)
        and torch.equal(val.y, val.x + 1)
        and len(lm_windows(ids, 8, max_windows=3)) == 3
    )
    model = GPT(GPTConfig(**{**TINY, "vocab_size": 100}))
    loss = evaluate_loss(model, val, lm_loss)
    assert abs(loss - torch.log(torch.tensor(100.0)).item()) < 0.5  # untrained ≈ uniform


def test_training_reduces_loss():
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY))
    ids = torch.arange(200) % 7  # a periodic stream: easy to learn
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(60):
        x, y = random_windows(ids, 8, 16, g)
        loss = lm_loss(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


# ------------------------------------------------------------------ bad input
def test_rejects_bad_config():
    with pytest.raises(ValueError, match="divisible by n_heads"):
        GPTConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="n_layers must be a positive integer"):
        GPTConfig(n_layers=0)
    with pytest.raises(TypeError, match="config must be a GPTConfig"):
        GPT({"d_model": 8})


def test_rejects_bad_idx():
    model = GPT(GPTConfig(**TINY))
    with pytest.raises(ValueError, match="idx must be 2-D"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.zeros(1, 5))
    with pytest.raises(ValueError, match=r"idx must lie in \[0, 61\)"):
        model(torch.tensor([[0, 61]]))
    with pytest.raises(ValueError, match="exceeds max_len 24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="need more than seq_len"):
        random_windows(torch.arange(5), 2, 8)
    with pytest.raises(ValueError, match="need at least seq_len"):
        lm_windows(torch.arange(5), 8)


def test_fused_and_readable_attention_agree():
    torch.manual_seed(0)
    fused = GPT(GPTConfig(**TINY, use_builtin=True)).eval()
    readable = GPT(GPTConfig(**TINY, use_builtin=False)).eval()
    readable.load_state_dict(fused.state_dict())
    idx = torch.randint(0, TINY["vocab_size"], (2, 16))
    assert torch.allclose(fused(idx), readable(idx), atol=1e-5)
    readable.double()
    cached, recomputed = (
        readable.generate(idx[:, :3], 25, temperature=0, use_cache=c) for c in (True, False)
    )
    assert torch.equal(cached, recomputed)  # the readable attention path honours the cache too
