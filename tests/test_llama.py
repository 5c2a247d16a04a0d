"""zen.llama and its parts: RMSNorm, SwiGLU, RoPE layouts, grouped-query attention, HF loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zen.attention import MultiHeadAttention, repeat_kv
from zen.llama import Llama, LlamaConfig, kv_cache_bytes, swiglu_width
from zen.positions import RotaryEmbedding, half_to_interleaved, interleaved_to_half
from zen.transformer import FeedForward, RMSNorm

TINY = dict(vocab_size=61, max_len=32, n_layers=2, n_heads=4, n_kv_heads=2, d_model=32)


def hf_model(kind: str = "llama", seed: int = 0, **overrides):
    """A Hugging Face Llama or Qwen2 from a small random config, every weight randomised."""
    import transformers

    cfg = dict(vocab_size=97, hidden_size=48, intermediate_size=112, num_hidden_layers=2,
               num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=64,
               bos_token_id=0, eos_token_id=0, pad_token_id=0)  # fmt: skip
    cfg.update(overrides)
    if kind == "llama":
        config, cls = transformers.LlamaConfig(**cfg), transformers.LlamaForCausalLM
    else:
        config, cls = transformers.Qwen2Config(**cfg), transformers.Qwen2ForCausalLM
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():  # biases and norm gains are 0 and 1 at init: make every one count
        for p in model.parameters():
            p.normal_(0.0, 0.1 if p.ndim > 1 else 0.5).add_(1.0 if p.ndim == 1 else 0.0)
    return model


CASES = {
    "llama GQA untied": ("llama", {}),
    "llama MHA tied": ("llama", {"num_key_value_heads": 6, "tie_word_embeddings": True}),
    "llama MQA theta": ("llama", {"num_key_value_heads": 1, "rope_theta": 500000.0}),
    "qwen2 GQA tied": ("qwen2", {"tie_word_embeddings": True}),
    "qwen2 MQA untied theta": ("qwen2", {"num_key_value_heads": 1, "rope_theta": 1e6}),
    "qwen2 MHA": ("qwen2", {"num_key_value_heads": 6, "num_hidden_layers": 3}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_from_hf_logits_match(name):
    kind, overrides = CASES[name]
    hf = hf_model(kind, **overrides)
    ours = Llama.from_hf(hf).eval()
    c = ours.config
    assert (c.n_kv_heads, c.tie_embeddings, c.qkv_bias) == (
        hf.config.num_key_value_heads,
        hf.config.tie_word_embeddings,
        kind == "qwen2",
    )
    idx = torch.randint(0, 97, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (ours(idx) - hf(idx).logits).abs().max().item()
    assert diff < 1e-5, f"{name}: {diff}"


def test_rope_theta_matters():
    """The non-default theta case is not passing by accident: a wrong theta gives other logits."""
    hf = hf_model("llama", rope_theta=500000.0)
    ours = Llama.from_hf(hf).eval()
    idx = torch.randint(0, 97, (1, 30), generator=torch.Generator().manual_seed(2))
    default = RotaryEmbedding(ours.config.d_head, max_len=ours.config.max_len)  # theta 10 000
    ours.rope.cos_table.copy_(default.cos_table)
    ours.rope.sin_table.copy_(default.sin_table)
    with torch.no_grad():
        assert (ours(idx) - hf(idx).logits).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_greedy_generation_equals_hf_argmax_loop(kind):
    hf = hf_model(kind)
    ours = Llama.from_hf(hf).eval()
    prompt = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(3))
    idx = prompt
    with torch.no_grad():
        for _ in range(12):  # Hugging Face's model, argmax of the last position, no cache
            idx = torch.cat([idx, hf(idx).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    for use_cache in (True, False):
        assert torch.equal(ours.generate(prompt, 12, temperature=0, use_cache=use_cache), idx)


@pytest.mark.parametrize(
    "kwargs", [dict(temperature=0), dict(temperature=1.0, top_k=10), dict(top_p=0.9)]
)
def test_cached_generation_equals_uncached(device, kwargs):
    torch.manual_seed(0)
    model = Llama(LlamaConfig(**TINY)).to(device)
    prompt = torch.randint(0, TINY["vocab_size"], (2, 3), device=device)
    runs = [
        model.generate(
            prompt, 20, use_cache=c, generator=torch.Generator(device).manual_seed(4), **kwargs
        )  # fmt: skip
        for c in (True, False)
    ]
    assert torch.equal(runs[0], runs[1])


def test_generation_past_max_len_and_training_mode():
    torch.manual_seed(0)
    model = Llama(LlamaConfig(**{**TINY, "max_len": 8})).train()
    out = model.generate(torch.zeros(1, 2, dtype=torch.long), 12, temperature=0)
    assert out.shape == (1, 14) and model.training


def test_cache_holds_n_kv_heads_and_matches_formula():
    torch.manual_seed(0)
    model = Llama(LlamaConfig(**TINY)).eval()
    cache = model.new_cache()
    idx = torch.randint(0, TINY["vocab_size"], (3, 11))
    with torch.no_grad():
        full = model(idx)
        parts = torch.cat([model(idx[:, :4], cache=cache), model(idx[:, 4:], cache=cache)], 1)
    assert torch.allclose(full, parts, atol=1e-5)
    assert cache[0].k.shape == (3, TINY["n_kv_heads"], 11, 8)
    held = sum(c.k.nbytes + c.v.nbytes for c in cache)
    assert held == kv_cache_bytes(2, TINY["n_kv_heads"], 8, 11, batch=3, bytes_per_number=4)


def test_rmsnorm_matches_torch_and_upcasts():
    x = torch.randn(4, 7, 24)
    ours, ref = RMSNorm(24, eps=1e-6), torch.nn.RMSNorm(24, eps=1e-6)
    with torch.no_grad():
        ours.weight.normal_()
        ref.weight.copy_(ours.weight)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    xb = (x * 300).bfloat16()
    out = ours.to(torch.bfloat16)(xb)
    x64, w64 = xb.double(), ours.weight.double()
    exact = w64 * x64 / x64.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
    # float32 statistics: only the two final roundings to bfloat16 (2^-8 relative each) remain
    assert out.dtype == torch.bfloat16
    assert ((out.double() - exact).abs() <= 2**-7 * exact.abs() + 1e-30).all()


def test_swiglu_width_and_parameters():
    for d in (64, 96, 768, 4096):
        w = swiglu_width(d)
        assert 3 * d * w >= 8 * d * d and 3 * d * (w - 1) < 8 * d * d
    assert swiglu_width(4096, multiple_of=256) == 11008  # Llama-2-7B's d_ff
    ffn = FeedForward(96, swiglu_width(96), "silu", bias=False, gated=True)
    mlp = FeedForward(96, 4 * 96, "gelu", bias=False)
    assert sum(p.numel() for p in ffn.parameters()) == sum(p.numel() for p in mlp.parameters())
    x = torch.randn(5, 96)
    assert torch.allclose(ffn(x), ffn.fc2(F.silu(ffn.gate(x)) * ffn.fc1(x)))


def test_rope_layouts_convert():
    x = torch.randn(2, 3, 10, 16)
    assert torch.equal(half_to_interleaved(interleaved_to_half(x)), x)
    half, inter = RotaryEmbedding(16), RotaryEmbedding(16, interleaved=True)
    assert torch.allclose(half(interleaved_to_half(x), 5), interleaved_to_half(inter(x, 5)))
    # the paper's layout: pair (x_0, x_1) rotated by angle p · base^0 = p
    p = 3
    rotated = inter(x, p)[..., 0, :2]
    c, s = torch.cos(torch.tensor(float(p))), torch.sin(torch.tensor(float(p)))
    expected = torch.stack(
        [x[..., p, 0] * c - x[..., p, 1] * s, x[..., p, 0] * s + x[..., p, 1] * c], -1
    )
    assert torch.allclose(inter(x)[..., p, :2], expected, atol=1e-6)
    assert rotated.shape == (2, 3, 2)


@pytest.mark.parametrize("n_kv_heads", [1, 2, 4])
def test_gqa_equals_mha_with_repeated_kv_weights(n_kv_heads):
    torch.manual_seed(0)
    d, h = 32, 4
    gqa = MultiHeadAttention(d, h, n_kv_heads=n_kv_heads, bias=False)
    mha = MultiHeadAttention(d, h, bias=False)
    rep = h // n_kv_heads
    with torch.no_grad():
        mha.q_proj.weight.copy_(gqa.q_proj.weight)
        mha.out_proj.weight.copy_(gqa.out_proj.weight)
        for ours, theirs in ((mha.k_proj, gqa.k_proj), (mha.v_proj, gqa.v_proj)):
            w = theirs.weight.view(n_kv_heads, 1, d // h, d).expand(-1, rep, -1, -1)
            ours.weight.copy_(w.reshape(d, d))  # every query head gets its group's k/v rows
    x = torch.randn(2, 9, d)
    for builtin in (True, False):
        gqa.use_builtin = builtin
        assert torch.allclose(gqa(x, is_causal=True), mha(x, is_causal=True), atol=1e-6)
    assert gqa.k_proj.weight.shape == (n_kv_heads * d // h, d)
    assert repeat_kv(torch.arange(2.0).view(1, 2, 1, 1), 2).flatten().tolist() == [0, 0, 1, 1]


def test_config_errors():
    with pytest.raises(ValueError, match="n_heads must be divisible by n_kv_heads"):
        LlamaConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="even d_head"):
        LlamaConfig(d_model=12, n_heads=4)
    with pytest.raises(ValueError, match="rope_theta"):
        LlamaConfig(rope_theta=0.0)
    with pytest.raises(TypeError, match="LlamaConfig"):
        Llama({"d_model": 64})


def test_from_hf_errors():
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(TypeError, match="LlamaForCausalLM or Qwen2ForCausalLM"):
        Llama.from_hf(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2)))
    with pytest.raises(ValueError, match="rope type"):
        Llama.from_hf(
            hf_model(rope_scaling={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4})
        )
    with pytest.raises(ValueError, match="hidden_act"):
        Llama.from_hf(hf_model(hidden_act="gelu"))
    with pytest.raises(ValueError, match="attention_bias"):
        Llama.from_hf(hf_model(attention_bias=True))
    with pytest.raises(ValueError, match="head_dim"):
        Llama.from_hf(hf_model(head_dim=16))
    with pytest.raises(ValueError, match="use_sliding_window"):
        Llama.from_hf(hf_model("qwen2", use_sliding_window=True, sliding_window=8))


def test_bad_inputs():
    model = Llama(LlamaConfig(**TINY))
    with pytest.raises(ValueError, match=r"must lie in \[0, 61\)"):
        model(torch.tensor([[0, 61]]))
    with pytest.raises(TypeError, match="integer token ids"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="2-D"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.zeros(1, 1, dtype=torch.long), 3, temperature=-1)
    with pytest.raises(ValueError, match="n_rep"):
        repeat_kv(torch.zeros(1, 2, 3, 4), 0)
    with pytest.raises(ValueError, match="even"):
        interleaved_to_half(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="features"):
        RMSNorm(8)(torch.zeros(2, 9))


def test_training_reduces_loss():
    torch.manual_seed(0)
    model = Llama(LlamaConfig(**TINY))
    data = torch.randint(0, 8, (16, 17))  # only 8 of 61 tokens: easy to learn the unigram
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        logits = model(data[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), data[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.5


def test_rope_table_equals_on_the_fly():
    x = torch.randn(2, 3, 6, 16)
    table, fly = RotaryEmbedding(16, max_len=8), RotaryEmbedding(16)
    for offset in (0, 2, 5):  # inside the table, and running past its end
        assert torch.equal(table(x, offset), fly(x, offset))
    with pytest.raises(ValueError, match="max_len"):
        RotaryEmbedding(16, max_len=0)
