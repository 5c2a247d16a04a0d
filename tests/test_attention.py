"""Reference code of the attention chapter: zen attention equals PyTorch's built-ins, forward and
backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zen.attention import (
    KVCache,
    MultiHeadAttention,
    causal_mask,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)

ATOL = 1e-5


def _rand(g, *shape, device, dtype=torch.float32):
    return torch.randn(*shape, generator=g, dtype=dtype).to(device).requires_grad_(True)


def _grads(out, inputs, g_out):
    return torch.autograd.grad(out, inputs, g_out)


@pytest.mark.parametrize("seed", range(6))
def test_sdpa_matches_builtin_over_random_shapes_and_masks(seed, device):
    g = torch.Generator().manual_seed(seed)
    B, H = (int(x) for x in torch.randint(1, 4, (2,), generator=g))
    L, S = (int(x) for x in torch.randint(1, 9, (2,), generator=g))
    E, Ev = (int(x) for x in torch.randint(1, 17, (2,), generator=g))
    q, k, v = (
        _rand(g, B, H, L, E, device=device),
        _rand(g, B, H, S, E, device=device),
        _rand(g, B, H, S, Ev, device=device),
    )
    kind = ["none", "bool", "bool_bcast", "float", "causal", "causal_bool"][seed]
    mask, causal = None, kind.startswith("causal")
    if kind in ("bool", "causal_bool"):
        mask = (torch.rand(B, H, L, S, generator=g) > 0.3).to(device)
    elif kind == "bool_bcast":
        mask = (torch.rand(L, S, generator=g) > 0.3).to(device)
    elif kind == "float":
        mask = torch.randn(B, 1, L, S, generator=g).to(device)
    ours = scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    ref = F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=mask
        if not causal
        else (
            causal_mask(L, S, device=device)
            if mask is None
            else mask & causal_mask(L, S, device=device)
        ),
    )
    assert ours.shape == (B, H, L, Ev)
    assert torch.allclose(ours, ref, atol=ATOL)
    g_out = torch.randn(ours.shape, generator=g).to(device)
    for a, b in zip(_grads(ours, (q, k, v), g_out), _grads(ref, (q, k, v), g_out)):
        assert torch.allclose(a, b, atol=ATOL)


def test_is_causal_matches_builtin_flag(device):
    g = torch.Generator().manual_seed(0)
    q, k, v = (_rand(g, 2, 3, 5, 4, device=device) for _ in range(3))
    assert torch.allclose(
        scaled_dot_product_attention(q, k, v, is_causal=True),
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
        atol=ATOL,
    )


def test_scale_and_weights(device):
    g = torch.Generator().manual_seed(1)
    q, k, v = (
        _rand(g, 2, 4, 3, device=device),
        _rand(g, 2, 6, 3, device=device),
        _rand(g, 2, 6, 5, device=device),
    )
    out, w = scaled_dot_product_attention(q, k, v, scale=0.3, return_weights=True)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, scale=0.3), atol=ATOL)
    assert w.shape == (2, 4, 6)
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, device=device), atol=ATOL)
    assert torch.allclose(out, w @ v, atol=ATOL)


def test_fully_masked_query_gives_zeros_not_nan(device):
    q, k, v = (torch.randn(1, 3, 4, device=device, requires_grad=True) for _ in range(3))
    mask = torch.ones(3, 3, dtype=torch.bool, device=device)
    mask[1] = False
    out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
    assert torch.equal(out[0, 1], torch.zeros(4, device=device)) and torch.equal(
        w[0, 1], torch.zeros(3, device=device)
    )
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=ATOL)
    out.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()


def test_dropout_zeroes_weights_and_rescales():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 50, 8), torch.randn(1, 50, 8), torch.eye(50).unsqueeze(0)
    out = scaled_dot_product_attention(
        q, k, v, dropout_p=0.5
    )  # with v = I, out is the dropped weights
    w = scaled_dot_product_attention(q, k, v)
    kept = out != 0
    assert 0.3 < kept.float().mean() < 0.7
    assert torch.allclose(out[kept], 2 * w[kept])


def test_split_merge_roundtrip():
    x = torch.randn(2, 5, 12)
    h = split_heads(x, 3)
    assert h.shape == (2, 3, 5, 4)
    assert torch.equal(h[:, 1], x[..., 4:8])  # head 1 owns features 4..7
    assert torch.equal(merge_heads(h), x)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("use_builtin", [False, True])
def test_mha_matches_nn_multiheadattention(seed, use_builtin, device):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    H = [1, 2, 4, 3][seed]
    d = H * int(torch.randint(1, 6, (1,), generator=g))
    B, L, S = (int(x) for x in torch.randint(1, 7, (3,), generator=g))
    cross = seed % 2 == 1
    ref = nn.MultiheadAttention(d, H, batch_first=True).to(device)
    ours = MultiHeadAttention(d, H, use_builtin=use_builtin).to(device)
    ours.load_torch_weights(ref)
    x = _rand(g, B, L, d, device=device)
    mem = _rand(g, B, S, d, device=device) if cross else x
    S = mem.shape[1]
    pad = torch.rand(B, S, generator=g) < 0.3
    pad[:, 0] = (
        False  # every query keeps at least one key (nn.MultiheadAttention gives NaN otherwise)
    )
    pad = pad.to(device)
    causal = seed == 2
    ref_mask = (
        ~causal_mask(L, device=device) if causal else None
    )  # nn.MultiheadAttention: True = blocked
    out_ref, w_ref = ref(
        x, mem, mem, key_padding_mask=pad, attn_mask=ref_mask, average_attn_weights=False
    )
    out, w = ours(
        x, mem if cross else None, key_padding_mask=pad, is_causal=causal, need_weights=True
    )
    assert torch.allclose(out, out_ref, atol=ATOL)
    assert torch.allclose(w, w_ref, atol=ATOL)
    out_fast = ours(x, mem if cross else None, key_padding_mask=pad, is_causal=causal)
    assert torch.allclose(out_fast, out_ref, atol=ATOL)
    g_out = torch.randn(out.shape, generator=g).to(device)
    params = [x] + ([mem] if cross else [])
    ga = torch.autograd.grad(out_fast, params + [ours.q_proj.weight, ours.out_proj.bias], g_out)
    gb = torch.autograd.grad(out_ref, params + [ref.in_proj_weight, ref.out_proj.bias], g_out)
    assert torch.allclose(ga[0], gb[0], atol=ATOL)
    assert torch.allclose(ga[-2], gb[-2][:d], atol=ATOL)  # q rows of the fused in_proj
    assert torch.allclose(ga[-1], gb[-1], atol=ATOL)


def test_mha_float_and_bool_attn_mask_agree(device):
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 2).to(device)
    x = torch.randn(2, 5, 8, device=device)
    keep = torch.rand(2, 1, 5, 5, device=device) > 0.3
    keep[..., 0] = True
    additive = torch.zeros(keep.shape, device=device).masked_fill(~keep, float("-inf"))
    pad = torch.tensor([[False] * 4 + [True], [False] * 5], device=device)
    a = mha(x, attn_mask=keep, key_padding_mask=pad, is_causal=True)
    b = mha(x, attn_mask=additive, key_padding_mask=pad, is_causal=True)
    mha.use_builtin = True
    c = mha(x, attn_mask=additive, key_padding_mask=pad, is_causal=True)
    assert torch.allclose(a, b, atol=ATOL) and torch.allclose(a, c, atol=ATOL)


@pytest.mark.parametrize("use_builtin", [False, True])
def test_kv_cache_decoding_equals_full_recompute(use_builtin, device):
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3, use_builtin=use_builtin).to(device).eval()
    x = torch.randn(2, 7, 12, device=device)
    full = mha(x, is_causal=True)
    cache = KVCache()
    parts = [mha(x[:, :3], is_causal=True, cache=cache)]  # a prompt of 3, then one token at a time
    for t in range(3, 7):
        parts.append(mha(x[:, t : t + 1], is_causal=True, cache=cache))
    assert len(cache) == 7
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=ATOL)


def test_bad_inputs_name_the_shapes():
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    with pytest.raises(ValueError, match=r"same feature size E.*\(2, 3, 4\).*\(2, 5, 3\)"):
        scaled_dot_product_attention(q, torch.randn(2, 5, 3), v)
    with pytest.raises(ValueError, match=r"same length S.*\(2, 5, 4\).*\(2, 6, 6\)"):
        scaled_dot_product_attention(q, k, torch.randn(2, 6, 6))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(3, 4\).*\(2, 3, 5\)"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"batch dims.*\(3, 5, 4\)"):
        scaled_dot_product_attention(q, torch.randn(3, 5, 4), torch.randn(3, 5, 6))
    with pytest.raises(TypeError, match="attn_mask must be bool"):
        scaled_dot_product_attention(q, k, v, attn_mask=torch.ones(3, 5, dtype=torch.long))
    with pytest.raises(TypeError, match="floating-point"):
        scaled_dot_product_attention(q.long(), k, v)
    with pytest.raises(ValueError, match="at least 2 dims"):
        scaled_dot_product_attention(torch.randn(4), k, v)
    with pytest.raises(ValueError, match="dropout_p"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.5)
    with pytest.raises(ValueError, match="divisible by n_heads.*d_model=10, n_heads=3"):
        MultiHeadAttention(10, 3)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"query must have 8 features.*\(2, 3, 6\)"):
        mha(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match=r"query must be 3-D.*\(3, 8\)"):
        mha(torch.randn(3, 8))
    with pytest.raises(
        ValueError, match=r"key_padding_mask must have shape \(batch, S\) = \(2, 3\), got \(2, 4\)"
    ):
        mha(torch.randn(2, 3, 8), key_padding_mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"query, key, value must share.*\(2, 5, 8\).*\(2, 4, 8\)"):
        mha(torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match=r"attn_mask of shape \(4, 4\)"):
        mha(torch.randn(2, 3, 8), attn_mask=torch.ones(4, 4, dtype=torch.bool))


def test_load_torch_weights_rejects_what_does_not_map():
    ref = nn.MultiheadAttention(8, 2, batch_first=True)
    with pytest.raises(ValueError, match="embed_dim=8, num_heads=2.*d_model=8, n_heads=4"):
        MultiHeadAttention(8, 4).load_torch_weights(ref)
    with pytest.raises(ValueError, match="bias mismatch"):
        MultiHeadAttention(8, 2, bias=False).load_torch_weights(ref)
    with pytest.raises(ValueError, match="kdim = vdim = embed_dim"):
        MultiHeadAttention(8, 2).load_torch_weights(nn.MultiheadAttention(8, 2, kdim=4, vdim=4))
    with pytest.raises(TypeError, match="nn.MultiheadAttention, got Linear"):
        MultiHeadAttention(8, 2).load_torch_weights(nn.Linear(8, 8))
    no_bias = nn.MultiheadAttention(8, 2, bias=False, batch_first=True)
    ours = MultiHeadAttention(8, 2, bias=False).load_torch_weights(no_bias)
    x = torch.randn(2, 3, 8)
    assert torch.allclose(ours(x), no_bias(x, x, x, need_weights=False)[0], atol=ATOL)


def test_builtin_causal_with_weights_masks_the_future(device):
    """Issue 16: use_builtin=True, is_causal=True, need_weights=True and no other mask."""
    torch.manual_seed(0)
    readable = MultiHeadAttention(12, 3).to(device).eval()
    fused = MultiHeadAttention(12, 3, use_builtin=True).to(device).eval()
    fused.load_state_dict(readable.state_dict())
    x = torch.randn(2, 6, 12, device=device)
    out, w = fused(x, is_causal=True, need_weights=True)
    ref_out, ref_w = readable(x, is_causal=True, need_weights=True)
    above = ~causal_mask(6, device=device)  # (L, S): True strictly above the diagonal
    assert (w[..., above] == 0).all(), "a query attended to a later key"
    assert torch.allclose(w, ref_w, atol=ATOL) and torch.allclose(out, ref_out, atol=ATOL)
    assert torch.allclose(out, fused(x, is_causal=True), atol=ATOL)  # the fused kernel agrees


def test_mha_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_heads must be a positive integer, got 0"):
        MultiHeadAttention(8, 0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0.0, 1.0\], got -0.1"):
        MultiHeadAttention(8, 2, dropout=-0.1)
    with pytest.raises(TypeError, match="takes 3 positional arguments"):
        MultiHeadAttention(8, 2, 0.1)  # everything after n_heads is keyword-only
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(TypeError, match="query must be a torch.Tensor, got list"):
        mha([[1.0] * 8])
    with pytest.raises(TypeError, match="key_padding_mask must be bool"):
        mha(torch.randn(1, 3, 8), key_padding_mask=torch.zeros(1, 3))
