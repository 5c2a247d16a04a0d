"""Tests for the compression chapter's modules.

zen.compress.prune, zen.compress.quant, zen.compress.distill and zen.compress.lowrank.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
import torch.nn.utils.prune as tprune
from torch import nn

from zen.compress import distill, lowrank, prune, quant
from zen.swap import swap_linears


def mlp(device, hidden=32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, 5)).to(device)


# ---- pruning ---------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_masks_reach_sparsity(device, scope):
    model = mlp(device)
    masks = prune.magnitude_masks(model, 0.75, scope)
    prune.apply_masks(model, masks)
    assert prune.sparsity(model) == pytest.approx(0.75, abs=0.01)
    if scope == "layer":
        for _name, p in prune.prunable(model).items():
            assert (p == 0).float().mean().item() == pytest.approx(0.75, abs=0.02)


def test_global_mask_matches_torch_prune(device):
    a, b = mlp(device), mlp(device)
    masks = prune.magnitude_masks(a, 0.6, "global")
    params = [(b[0], "weight"), (b[2], "weight")]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=0.6)
    assert torch.equal(masks["0.weight"], b[0].weight_mask.bool())
    assert torch.equal(masks["2.weight"], b[2].weight_mask.bool())


def test_masked_weights_stay_zero_while_training(device):
    model = mlp(device)
    prune.apply_masks(model, prune.magnitude_masks(model, 0.5))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = torch.randn(64, 16, device=device), torch.randint(0, 5, (64,), device=device)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    assert prune.sparsity(model) == pytest.approx(0.5, abs=0.01)


def test_prune_hidden_units_exact_when_dropping_dead_units(device):
    model = mlp(device)
    with torch.no_grad():
        model[0].weight[:8] = 0  # 8 dead units: removing them changes nothing
        model[0].bias[:8] = 0
    fc1, fc2 = prune.prune_hidden_units(model[0], model[2], keep=24)
    assert fc1.weight.shape == (24, 16) and fc2.weight.shape == (5, 24)
    x = torch.randn(10, 16, device=device)
    torch.testing.assert_close(fc2(F.relu(fc1(x))), model(x))


def test_prune_bad_input():
    model = mlp("cpu")
    with pytest.raises(ValueError, match="sparsity"):
        prune.magnitude_masks(model, 1.5)
    with pytest.raises(ValueError, match="scope"):
        prune.magnitude_masks(model, 0.5, "row")
    with pytest.raises(ValueError, match="keep"):
        prune.prune_hidden_units(model[0], model[2], keep=64)
    with pytest.raises(ValueError, match="shape"):
        prune.apply_masks(model, {"0.weight": torch.ones(3, 3, dtype=torch.bool)})


# ---- quantization ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", quant.SCHEMES)
@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("bits", [8, 4])
def test_rounding_error_at_most_half_scale(device, scheme, axis, bits):
    torch.manual_seed(bits)
    x = torch.randn(17, 33, device=device) * torch.rand(17, 1, device=device) * 3 + 0.5
    qt = quant.quantize(x, bits, scheme, axis)
    qmin, qmax = quant.qrange(bits, scheme)
    assert qt.q.dtype == torch.int8 and qt.q.min() >= qmin and qt.q.max() <= qmax
    err = (x - qt.dequantize()).abs()
    assert (err <= qt.scale / 2 * (1 + 1e-5) + 1e-7).all()
    # the bound is tight-ish: some error is close to scale/2
    assert (err / qt.scale).max() > 0.4


def test_per_channel_beats_per_tensor_with_outlier_rows():
    torch.manual_seed(0)
    w = torch.randn(64, 64)
    w[0] *= 100  # one row with large weights ruins the per-tensor scale
    e_tensor = (w - quant.quantize(w).dequantize())[1:].abs().mean()
    e_channel = (w - quant.quantize(w, axis=0).dequantize())[1:].abs().mean()
    assert e_channel < e_tensor / 20


def test_asymmetric_uses_full_range_on_one_sided_data():
    x = torch.rand(1000) * 6  # post-ReLU-like, in [0, 6]
    sym = quant.quantize(x, 8, "symmetric")
    asym = quant.quantize(x, 8, "asymmetric")
    assert asym.scale < sym.scale * 0.51  # 255 levels instead of 127
    assert quant.dequantize(asym).sub(x).abs().max() <= asym.scale / 2 * (1 + 1e-5)


def test_zero_is_exact():
    x = torch.tensor([0.0, 0.3, 1.7, 2.0])
    for scheme in quant.SCHEMES:
        assert quant.quantize(x, 8, scheme).dequantize()[0] == 0


def test_int_matmul_exact(device):
    g = torch.Generator().manual_seed(0)
    a = torch.randint(-127, 128, (8, 300), generator=g, dtype=torch.int8).to(device)
    b = torch.randint(-127, 128, (300, 5), generator=g, dtype=torch.int8).to(device)
    got = quant.int_matmul(a, b)
    assert got.dtype == torch.int32
    assert torch.equal(got.cpu().long(), a.cpu().long() @ b.cpu().long())


def test_int8_linear_close_to_float(device):
    torch.manual_seed(0)
    lin = nn.Linear(64, 32).to(device)
    x = torch.randn(4, 7, 64, device=device)
    q = quant.Int8Linear.from_float(lin)
    ref = lin(x)
    assert q(x).shape == ref.shape
    assert (q(x) - ref).abs().max() < 0.02 * ref.abs().max()


def test_fake_quant_straight_through(device):
    x = torch.randn(5, 6, device=device, requires_grad=True)
    y = quant.fake_quant(x, 4)
    torch.testing.assert_close(y, quant.quantize(x, 4).dequantize())
    (y * torch.arange(6.0, device=device)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(6.0, device=device).expand(5, 6))


def test_fake_quant_linear_matches_int8_linear():
    torch.manual_seed(0)
    lin = nn.Linear(16, 8)
    x = torch.randn(3, 16)
    fq = quant.FakeQuantLinear.from_float(lin, quantize_input=False)
    w_hat = quant.quantize(lin.weight, axis=0).dequantize()
    torch.testing.assert_close(fq(x), F.linear(x, w_hat, lin.bias))


def test_swap_linears_and_size():
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 256))
    before = quant.size_bytes(model)
    swap_linears(model, quant.Int8Linear.from_float)
    assert isinstance(model[0], quant.Int8Linear)
    assert quant.size_bytes(model) < before / 2.5


def test_quant_bad_input():
    x = torch.randn(4, 4)
    for bits in (0, 1, 9, 16, 8.0):
        with pytest.raises(ValueError, match="bits"):
            quant.quantize(x, bits)
    with pytest.raises(ValueError, match="non-empty"):
        quant.quantize(torch.empty(0, 4))
    with pytest.raises(ValueError, match="scheme"):
        quant.quantize(x, 8, "affine")
    with pytest.raises(ValueError, match="axis"):
        quant.quantize(x, axis=2)
    with pytest.raises(TypeError, match="floating"):
        quant.quantize(torch.ones(3, dtype=torch.int64))
    with pytest.raises(TypeError, match="int8"):
        quant.int_matmul(torch.ones(2, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match="inner"):
        quant.int_matmul(torch.ones(2, 3, dtype=torch.int8), torch.ones(2, 2, dtype=torch.int8))


# ---- distillation ----------------------------------------------------------------------


def test_soft_loss_matches_kl_div(device):
    torch.manual_seed(0)
    s, t = torch.randn(8, 10, device=device), torch.randn(8, 10, device=device)
    ref = (
        F.kl_div(
            F.log_softmax(s / 3, -1),
            F.log_softmax(t / 3, -1),
            log_target=True,
            reduction="batchmean",
        )
        * 9
    )
    torch.testing.assert_close(distill.soft_loss(s, t, 3.0), ref)


def test_soft_loss_high_temperature_limit():
    """Hinton et al. §2.1: T² KL → Σ (z_s − z_t)² / (2N) for zero-mean logits as T → ∞."""
    torch.manual_seed(0)
    s, t = torch.randn(4, 10, dtype=torch.float64), torch.randn(4, 10, dtype=torch.float64)
    s, t = s - s.mean(-1, keepdim=True), t - t.mean(-1, keepdim=True)
    limit = ((s - t) ** 2).sum(-1).mean() / (2 * 10)
    torch.testing.assert_close(distill.soft_loss(s, t, 100.0), limit, rtol=1e-3, atol=0)


def test_distillation_loss_mixes():
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(
        distill.distillation_loss(s, t, y, 2.0, alpha=0.0), F.cross_entropy(s, y)
    )
    torch.testing.assert_close(
        distill.distillation_loss(s, t, y, 2.0, alpha=1.0), distill.soft_loss(s, t, 2.0)
    )


def test_distill_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        distill.soft_loss(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        distill.soft_loss(torch.randn(2, 3), torch.randn(2, 3), 0.0)
    with pytest.raises(ValueError, match="non-empty"):
        distill.soft_loss(torch.randn(0, 3), torch.randn(0, 3))
    with pytest.raises(ValueError, match="alpha"):
        distill.distillation_loss(
            torch.randn(2, 3), torch.randn(2, 3), torch.tensor([0, 1]), alpha=2.0
        )


# ---- low rank --------------------------------------------------------------------------


def test_svd_full_rank_is_exact(device):
    torch.manual_seed(0)
    lin = nn.Linear(12, 20).to(device)
    fac = lowrank.svd_factorize(lin, 12)
    x = torch.randn(5, 12, device=device)
    torch.testing.assert_close(fac(x), lin(x), atol=1e-5, rtol=1e-4)


def test_svd_truncation_error_is_eckart_young():
    torch.manual_seed(0)
    lin = nn.Linear(30, 20)
    s = torch.linalg.svdvals(lin.weight.detach())
    for r in (1, 5, 19):
        fac = lowrank.svd_factorize(lin, r)
        err = torch.linalg.matrix_norm(fac[1].weight @ fac[0].weight - lin.weight.detach())
        torch.testing.assert_close(err, s[r:].pow(2).sum().sqrt(), rtol=1e-4, atol=1e-5)
    assert lowrank.lowrank_parameters(20, 30, 5) == 250


def test_lowrank_bad_input():
    with pytest.raises(ValueError, match="rank must be <="):
        lowrank.svd_factorize(nn.Linear(4, 3), 4)
    with pytest.raises(ValueError, match="rank"):
        lowrank.svd_factorize(nn.Linear(4, 3), 0)
    with pytest.raises(TypeError, match="nn.Linear"):
        lowrank.svd_factorize(nn.Conv1d(3, 3, 1), 1)


# ---- round-to-nearest per group, GPTQ, SmoothQuant / AWQ, 2:4, FFN channels ------------

from zen.compress import gptq, outliers, rtn, sparsity  # noqa: E402
from zen.transformer import FeedForward  # noqa: E402


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("group_size", [0, None, 8, 32])
def test_rtn_error_bound_and_layouts(device, bits, group_size):
    w = torch.randn(6, 64, generator=torch.Generator().manual_seed(bits)).to(device)
    q, scale = rtn.rtn_quantize(w, bits, group_size)
    n_scales = {0: 1, None: 6}.get(group_size, 6 * 64 // (group_size or 1))
    assert scale.numel() == n_scales and q.abs().max() <= 2 ** (bits - 1) - 1
    err = (w - rtn.rtn_dequantize(q, scale)).abs()
    assert (err <= rtn.expand_scales(scale, w.shape) / 2 * (1 + 1e-6)).all()
    if group_size == 8:  # groups never do worse than channels, which never do worse than tensors
        mse = [(w - rtn.fake_rtn(w, bits, g)).pow(2).sum() for g in (8, None, 0)]
        assert mse[0] <= mse[1] <= mse[2]


def test_rtn_group_matches_reshape_reference():
    w = torch.randn(4, 12)
    q, s = rtn.rtn_quantize(w, 4, 4)
    g = w.reshape(4, 3, 4)
    ref_s = g.abs().amax(-1) / 7
    assert torch.allclose(s, ref_s)
    assert torch.equal(q, torch.round(g / ref_s[..., None]).clamp(-7, 7).reshape(4, 12).to(q.dtype))


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_pack_codes_two_per_byte_roundtrip(bits):
    q, _ = rtn.rtn_quantize(torch.randn(8, 16), bits, None)
    packed = rtn.pack_codes(q, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == q.numel() // 2
    assert torch.equal(rtn.unpack_codes(packed, bits, q.shape), q)
    assert rtn.quantized_bytes(q.numel(), 4, 8) == q.numel() / 2 + 16


def test_rtn_bad_input():
    w = torch.randn(4, 12)
    for bits in (1, 9, 4.0, True):
        with pytest.raises(ValueError, match="bits must be an integer in"):
            rtn.rtn_quantize(w, bits)
    with pytest.raises(ValueError, match="group_size must divide the 12 input columns"):
        rtn.rtn_quantize(w, 4, 5)
    with pytest.raises(ValueError, match="w must be 2-D"):
        rtn.rtn_quantize(torch.randn(12), 4)
    with pytest.raises(ValueError, match="bits <= 4"):
        rtn.pack_codes(torch.zeros(4, dtype=torch.int8), 8)


def correlated_inputs(n=512, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g)
    return torch.randn(n, d, generator=g) @ mix  # strongly correlated features


@pytest.mark.parametrize("group_size", [None, 8])
def test_gptq_equals_rtn_when_hessian_is_identity(group_size):
    w = torch.randn(16, 32)
    got = gptq.gptq_quantize(w, torch.eye(32, dtype=torch.float64), 3, group_size)
    assert torch.equal(got, rtn.fake_rtn(w, 3, group_size))


@pytest.mark.parametrize("group_size", [None, 8])
def test_gptq_lowers_output_error(group_size):
    x, w = correlated_inputs(), torch.randn(16, 32)
    H = gptq.calibration_hessian(x)
    assert torch.allclose(H, 2 * x.double().T @ x.double() / len(x))
    w_gptq = gptq.gptq_quantize(w, H, 3, group_size)
    assert gptq.layer_error(w, w_gptq, x) < 0.8 * gptq.layer_error(
        w, rtn.fake_rtn(w, 3, group_size), x
    )
    # values still lie on each group's grid (a quantized weight, not a float one)
    assert w_gptq.unique().numel() <= 16 * (7 if group_size is None else 7 * 4)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("group_size", [None, 16])
def test_gptq_act_order_helps_when_a_few_inputs_are_outliers(seed, group_size):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 64, generator=g) @ (torch.eye(64) + 0.3 * torch.randn(64, 64, generator=g))
    x[:, torch.randperm(64, generator=g)[:4]] *= 20  # four outlier input channels
    w, H = torch.randn(48, 64, generator=g), gptq.calibration_hessian(x)
    in_order = gptq.layer_error(w, gptq.gptq_quantize(w, H, 3, group_size), x)
    by_energy = gptq.layer_error(w, gptq.gptq_quantize(w, H, 3, group_size, act_order=True), x)
    assert by_energy < 0.9 * in_order  # measured 0.55–0.79 over these draws


def test_gptq_act_order_keeps_the_order_when_all_inputs_are_alike():
    w = torch.randn(16, 32)
    H = 2 * torch.eye(32, dtype=torch.float64)
    assert torch.equal(
        gptq.gptq_quantize(w, H, 4, 8, act_order=True), gptq.gptq_quantize(w, H, 4, 8)
    )


def test_gptq_handles_dead_inputs():
    x = correlated_inputs()
    x[:, 3] = 0
    w_hat = gptq.gptq_quantize(torch.randn(8, 32), gptq.calibration_hessian(x), 4)
    assert torch.isfinite(w_hat).all() and (w_hat[:, 3] == 0).all()


def test_gptq_bad_input():
    with pytest.raises(ValueError, match="calibration data is empty"):
        gptq.calibration_hessian(torch.zeros(0, 8))
    with pytest.raises(ValueError, match=r"hessian must be \(8, 8\)"):
        gptq.gptq_quantize(torch.randn(4, 8), torch.eye(4), 4)
    with pytest.raises(ValueError, match="group_size must divide the 8 input columns"):
        gptq.gptq_quantize(torch.randn(4, 8), torch.eye(8), 4, group_size=3)
    with pytest.raises(ValueError, match="bits must be an integer"):
        gptq.gptq_quantize(torch.randn(4, 8), torch.eye(8), 1)


def test_smoothquant_preserves_product_and_flattens_outliers():
    x = torch.randn(64, 16)
    x[:, 2] *= 100
    w = torch.randn(8, 16)
    s = outliers.smoothquant_scales(outliers.channel_absmax(x), w, 0.5)
    torch.testing.assert_close((x / s) @ (w * s).T, x @ w.T, rtol=1e-5, atol=1e-3)
    p2 = 2.0 ** torch.round(torch.log2(s))  # powers of two: bitwise equal
    assert torch.equal((x / p2) @ (w * p2).T, x @ w.T)
    ratio = lambda t: (t.abs().amax(0).max() / t.abs().amax(0).median()).item()  # noqa: E731
    assert ratio(x / s) < ratio(x) / 5


def test_awq_never_worse_than_rtn_on_its_calibration_data():
    x = torch.randn(256, 32)
    x[:, :2] *= 30  # salient channels
    w = torch.randn(16, 32)
    w_awq, alpha = outliers.awq_search(w, x, 3, 8)
    err = lambda v: (x @ v.T - x @ w.T).pow(2).mean()  # noqa: E731
    assert err(w_awq) <= err(rtn.fake_rtn(w, 3, 8)) * (1 + 1e-6) and alpha > 0


def test_outliers_bad_input():
    with pytest.raises(ValueError, match="calibration data is empty"):
        outliers.channel_absmax(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="calibration data is empty"):
        outliers.awq_search(torch.randn(4, 8), torch.zeros(0, 8))
    with pytest.raises(ValueError, match=r"x_absmax must have shape \(8,\)"):
        outliers.smoothquant_scales(torch.ones(4), torch.randn(4, 8))
    with pytest.raises(ValueError, match="alpha must be in"):
        outliers.smoothquant_scales(torch.ones(8), torch.randn(4, 8), 1.5)


def test_mask_2_4_pattern_keeps_largest(device):
    w = torch.randn(8, 16, device=device)
    m = sparsity.mask_2_4(w)
    assert (m.reshape(8, 4, 4).sum(-1) == 2).all()
    kept = (w.abs() * m).reshape(8, 4, 4)
    dropped = (w.abs() * ~m).reshape(8, 4, 4)
    assert (kept.amax(-1) >= dropped.amax(-1)).all()
    assert (kept.sort(-1).values[..., 2] >= dropped.amax(-1)).all()
    with pytest.raises(ValueError, match="divisible by 4"):
        sparsity.mask_2_4(torch.randn(4, 6))


def test_prune_ffn_channels_exact_on_dead_channels():
    ffn = FeedForward(8, 12, activation="silu", bias=False, gated=True)
    with torch.no_grad():
        ffn.fc2.weight[:, 6:] = 0  # channels 6..11 contribute nothing
    x = torch.randn(5, 8)
    y = ffn(x)
    sparsity.prune_ffn_channels(ffn, 6)
    assert ffn.fc1.weight.shape == (6, 8) and ffn.fc2.weight.shape == (8, 6)
    torch.testing.assert_close(ffn(x), y)
    with pytest.raises(ValueError, match="keep must be <= d_ff=6"):
        sparsity.prune_ffn_channels(ffn, 7)
    with pytest.raises(TypeError, match="gated FeedForward"):
        sparsity.prune_ffn_channels(FeedForward(8, 12), 4)


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("use_builtin", [False, True])
def test_pruning_head_groups_equals_zeroing_their_output_columns(n_kv_heads, use_builtin):
    from zen.attention import MultiHeadAttention
    from zen.positions import RotaryEmbedding

    torch.manual_seed(0)
    attn = MultiHeadAttention(
        32, 4, n_kv_heads=n_kv_heads, bias=False, rope=RotaryEmbedding(8, 16),
        use_builtin=use_builtin,
    )  # fmt: skip
    x = torch.randn(3, 10, 32)
    keep = max(1, n_kv_heads // 2)
    scores = torch.arange(n_kv_heads, dtype=torch.float).flip(0)  # the first groups score highest
    masked = copy.deepcopy(attn)
    r = 4 // n_kv_heads
    with torch.no_grad():
        masked.out_proj.weight[:, keep * r * 8 :] = 0  # the dropped query heads write nothing
    sparsity.prune_head_groups(attn, keep, scores)
    assert (attn.n_heads, attn.n_kv_heads) == (keep * r, keep)
    assert attn.q_proj.weight.shape == (keep * r * 8, 32) and attn.k_proj.weight.shape == (
        keep * 8,
        32,
    )
    torch.testing.assert_close(attn(x, is_causal=True), masked(x, is_causal=True))


def test_head_group_scores_and_bad_input():
    from zen.attention import MultiHeadAttention

    attn = MultiHeadAttention(16, 4, n_kv_heads=2, bias=False)
    with torch.no_grad():
        attn.out_proj.weight[:, :8] = 0  # group 0 (query heads 0, 1) writes nothing
    assert sparsity.head_group_scores(attn).shape == (2,)
    assert sparsity.head_group_scores(attn)[0] == 0 and sparsity.head_group_scores(attn)[1] > 0
    data = sparsity.head_group_scores(attn, torch.ones(4, 4))
    assert data[0] == 0 and data[1] > 0
    with pytest.raises(ValueError, match=r"head_out_absmean must be \(n_heads, d_head\)"):
        sparsity.head_group_scores(attn, torch.ones(4))
    with pytest.raises(ValueError, match="keep must be <= n_kv_heads=2"):
        sparsity.prune_head_groups(attn, 3)
    with pytest.raises(ValueError, match="one value per key/value group"):
        sparsity.prune_head_groups(attn, 1, torch.ones(4))
    with pytest.raises(TypeError, match="MultiHeadAttention"):
        sparsity.prune_head_groups(nn.Linear(4, 4), 1)
    sparsity.prune_head_groups(attn, 1)  # drops group 0, which wrote nothing
    assert attn.out_proj.weight.abs().sum() > 0 and attn.n_heads == 2


def test_nf4_bytes_equal_bitsandbytes():
    """Same packed codes and block absmax as bitsandbytes' ``quantize_4bit`` (runs on CPU).

    bitsandbytes is not a dependency (importing it makes ``peft`` load its 4-bit layers): run
    with ``pip install bitsandbytes``. Checked with 0.50.2: bytes and absmax identical.
    """
    functional = pytest.importorskip("bitsandbytes.functional")
    from zen.compress import nf4

    for seed in range(3):
        w = torch.randn(64, 128, generator=torch.Generator().manual_seed(seed))
        packed, state = functional.quantize_4bit(w, blocksize=64, quant_type="nf4")
        ours = nf4.nf4_quantize(w, 64)
        assert torch.equal(ours.packed, packed.flatten())
        assert torch.equal(ours.absmax, state.absmax)
        torch.testing.assert_close(
            ours.dequantize(), functional.dequantize_4bit(packed, state), atol=1e-6, rtol=0
        )
