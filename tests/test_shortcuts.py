"""Calling the reference does not pass a lab: every lab, solved, with its shortcuts typed in.

Each shortcut below once passed its check (issue 15): the library's own implementation, the
built-in kernel, the check cell's reference, a collective past the ring's ban. The solved lab
is graded with the shortcut appended to the solution cell that defines the function, and
every check that calls it must lose its points and say so.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from zen.course.labs import blank_regions, grade, role

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

OWN = "this check wants your own implementation"

# lab -> [(the function or class the shortcut replaces, its shortcut, the checks it must fail
#          (fragments of their names), the message they must give)]
SHORTCUTS: dict[str, list[tuple[str, str, list[str], str]]] = {
    "gradient_descent": [
        (
            "gradient_descent",
            "def gradient_descent(x, y, lr, steps):\n"
            "    from zen import linreg\n"
            "    return linreg.closed_form(x, y)",
            ["gradient descent reaches"],
            OWN,
        ),
    ],
    "backprop": [
        (
            "cross_entropy_grad",
            "def cross_entropy_grad(logits, y):\n"
            "    z = logits.detach().requires_grad_()\n"
            "    torch.nn.functional.cross_entropy(z, y).backward()\n"
            "    return z.grad",
            ["cross-entropy gradient"],
            OWN,
        ),
    ],
    "knobs": [
        (
            "kaiming_std",
            "def kaiming_std(fan_in, negative_slope=0.0):\n"
            "    return nn.init.calculate_gain('leaky_relu', negative_slope) / math.sqrt(fan_in)",
            ["standard deviation of Kaiming"],
            OWN,
        ),
        (
            "kaiming_normal_",
            "def kaiming_normal_(weight, negative_slope=0.0, generator=None):\n"
            "    return nn.init.kaiming_normal_(\n"
            "        weight, a=negative_slope, nonlinearity='leaky_relu', generator=generator\n"
            "    )",
            ["kaiming_normal_ fills", "Kaiming keeps the variance"],
            OWN,
        ),
        (
            "layer_variances",
            "def layer_variances(net, x):\n"
            "    return zen.layerstats.output_variances(net, x).tolist()",
            ["layer_variances equals"],
            OWN,
        ),
        (
            "deep_relu_net",
            "def deep_relu_net(width, depth, negative_slope=0.0, generator=None):\n"
            "    layers = [m for _ in range(depth) for m in (nn.ReLU(), nn.Linear(width, width))]\n"
            "    return zen.init.init_linear_(\n"
            "        nn.Sequential(*layers), 'kaiming', gain=math.sqrt(2), generator=generator\n"
            "    )",
            ["Kaiming keeps the variance"],
            OWN,
        ),
    ],
    "conv": [
        (
            "im2col",
            "def im2col(x, k, stride=1, padding=0):\n"
            "    return F.unfold(x, k, padding=padding, stride=stride)",
            ["im2col equals F.unfold"],
            OWN,
        ),
        (
            "conv2d",
            "def conv2d(x, weight, bias, stride=1, padding=0):\n"
            "    return conv.conv2d(x, weight, bias, stride, padding)",
            ["conv2d equals F.conv2d"],
            OWN,
        ),
        (
            "conv2d_weight_grad",
            "def conv2d_weight_grad(x, weight_shape, grad_out, stride=1, padding=0):\n"
            "    gw = torch.nn.grad.conv2d_weight(x, weight_shape, grad_out, stride, padding)\n"
            "    return gw, grad_out.sum(dim=(0, 2, 3))",
            ["weight and bias gradients"],
            OWN,
        ),
    ],
    "rnn": [
        (
            "lstm_cell",
            "def lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh):\n"
            "    from zen import rnn\n"
            "    return rnn.lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh)",
            ["LSTM cell equals"],
            OWN,
        ),
        (
            "rnn_forward",
            "def rnn_forward(x, h0, W_xh, W_hh, b):\n"
            "    layer = nn.RNN(W_xh.shape[0], W_xh.shape[1], batch_first=True).double()\n"
            "    with torch.no_grad():\n"
            "        layer.weight_ih_l0.copy_(W_xh.T), layer.weight_hh_l0.copy_(W_hh.T)\n"
            "        layer.bias_ih_l0.copy_(b), layer.bias_hh_l0.zero_()\n"
            "    return layer(x, h0[None])[0]",
            ["RNN forward pass"],
            OWN,
        ),
        (
            "rnn_bptt",
            "def rnn_bptt(x, h0, W_xh, W_hh, b, dhs):\n"
            "    leaves = [t.clone().requires_grad_(True) for t in (W_xh, W_hh, b, h0)]\n"
            "    hs = rnn_forward(x, leaves[3], *leaves[:3])\n"
            "    grads = torch.autograd.grad(hs, leaves, grad_outputs=dhs)\n"
            "    return dict(zip(['W_xh', 'W_hh', 'b', 'h0'], grads))",
            ["backpropagation through time"],
            OWN,
        ),
    ],
    "attention": [
        (
            "attention",
            "def attention(q, k, v, attn_mask=None, is_causal=False):\n"
            "    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, "
            "is_causal=is_causal)",
            ["attention equals F.scaled_dot_product_attention"],
            OWN,
        ),
        (
            "multi_head_attention",
            "def multi_head_attention(*args, **kwargs):\n    return mha_reference(*args, **kwargs)",
            ["multi-head attention equals"],
            OWN,
        ),
    ],
    "transformer_block": [
        (
            "layer_norm",
            "def layer_norm(x, gamma, beta, eps=1e-5):\n"
            "    return nn.functional.layer_norm(x, x.shape[-1:], gamma, beta, eps)",
            ["layer_norm equals"],
            OWN,
        ),
        (
            "pre_norm_block",
            "def pre_norm_block(layer, x):\n    return layer(x)",
            ["pre-norm block"],
            OWN,
        ),
        (
            "block_parameters",
            "def block_parameters(d_model, d_ff, bias):\n"
            "    layer = nn.TransformerEncoderLayer("
            "d_model, 2, d_ff, batch_first=True, bias=bias)\n"
            "    return count_parameters(layer)",
            ["the formula equals"],
            OWN,
        ),
    ],
    "bert": [
        (
            "mask_tokens",
            "def mask_tokens(input_ids, mask_id, special_ids, vocab_size, mask_prob=0.15, "
            "generator=None):\n"
            "    from zen.masking import mask_tokens as library\n"
            "    return library(input_ids, mask_id, special_ids, vocab_size, mask_prob, generator)",
            ["masking follows"],
            OWN,
        ),
        (
            "SentenceClassifier",
            "class SentenceClassifier(nn.Module):\n"
            "    def __init__(self, encoder, num_labels, p=0.1):\n"
            "        super().__init__()\n"
            "        self.inner = BertForSequenceClassification(encoder.config, num_labels)\n"
            "        self.inner.bert = self.encoder = encoder\n"
            "        self.classifier, self.dropout = self.inner.classifier, nn.Dropout(p)\n\n"
            "    def forward(self, input_ids, attention_mask=None):\n"
            "        return self.inner(input_ids, attention_mask=attention_mask)",
            ["classification head", "fine-tuning fits"],
            OWN,
        ),
    ],
    "gpt": [
        (
            "generate_cached",
            "def generate_cached(model, idx, max_new_tokens):\n"
            "    return model.generate(idx, max_new_tokens, temperature=0)",
            ["cached greedy generation"],
            OWN,
        ),
    ],
    "llama": [
        (
            "rms_norm",
            "def rms_norm(x, weight, eps=1e-6):\n"
            "    return weight * F.rms_norm(x.float(), x.shape[-1:], eps=eps).to(x.dtype)",
            ["rms_norm equals"],
            OWN,
        ),
        (
            "rope",
            "def rope(x, offset=0, theta=10000.0):\n"
            "    return RotaryEmbedding(x.shape[-1], base=theta).to(x.dtype)(x, offset)",
            ["rope equals"],
            OWN,
        ),
        (
            "gqa_attention",
            "def gqa_attention(*args):\n    return reference_attention(*args)",
            ["grouped-query attention equals", "decoding a few tokens"],
            OWN,
        ),
    ],
    "gan_vae": [
        (
            "discriminator_loss",
            "def discriminator_loss(real_logits, fake_logits):\n"
            "    bce = F.binary_cross_entropy_with_logits\n"
            "    return bce(real_logits, torch.ones_like(real_logits)) + "
            "bce(fake_logits, torch.zeros_like(fake_logits))",
            ["the discriminator loss"],
            OWN,
        ),
        (
            "negative_elbo",
            "def negative_elbo(x, logits, mu, logvar):\n"
            "    return -zen_elbo(x, logits, mu, logvar).elbo.mean()",
            ["the negative ELBO"],
            OWN,
        ),
    ],
    "quantization": [
        (
            "per_group_quantize",
            "def per_group_quantize(w, bits, group_size):\n"
            "    return rtn.rtn_quantize(w, bits, group_size)",
            ["per-group codes"],
            OWN,
        ),
        (
            "pack_int4",
            "def pack_int4(q):\n    return rtn.pack_codes(q, 4)",
            ["packed bytes"],
            OWN,
        ),
        (
            "gptq_quantize",
            "def gptq_quantize(w, H, bits):\n    return gptq.gptq_quantize(w, H, bits)",
            ["GPTQ equals"],
            OWN,
        ),
    ],
    "lora": [
        (
            "LoRA",
            "class LoRA(LoRALinear):\n    pass",
            ["initialisation", "the forward pass", "merge equals"],
            OWN,
        ),
    ],
    "moe": [
        (
            "top_k_route",
            "def top_k_route(logits, k):\n"
            "    weights, experts, _ = moe.route(logits, k)\n"
            "    return weights, experts",
            ["top_k_route equals"],
            OWN,
        ),
        (
            "dispatch_kept",
            "def dispatch_kept(experts, n_experts, capacity):\n"
            "    return dispatch_reference(experts, n_experts, capacity)",
            ["dispatch_kept keeps"],
            OWN,
        ),
        (
            "balance_loss",
            "def balance_loss(probs, experts):\n"
            "    from zen.moe import load_balancing_loss\n"
            "    return load_balancing_loss(probs, experts)",
            ["balance_loss equals"],
            OWN,
        ),
    ],
    "ring_allreduce": [
        (
            "ring_all_reduce",
            "def ring_all_reduce(t):\n"
            "    torch.distributed.distributed_c10d.all_reduce(t)\n"
            "    return t",
            ["the ring all-reduce"],
            "a collective was called",
        ),
    ],
    "tensor_parallel": [
        (
            "ColumnParallelLinear",
            "from zen.parallel import tensor_parallel as _library\n\n\n"
            "class ColumnParallelLinear(_library.ColumnParallelLinear):\n    pass",
            ["column-parallel"],
            OWN,
        ),
        (
            "RowParallelLinear",
            "class RowParallelLinear(nn.Module):  # the whole layer on every rank\n"
            "    def __init__(self, linear, world_size, rank):\n"
            "        super().__init__()\n"
            "        self.full = nn.Linear(linear.in_features, linear.out_features)\n"
            "        self.full.load_state_dict(linear.state_dict())\n"
            "        self.weight = nn.Parameter("
            "linear.weight.detach().chunk(world_size, 1)[rank])\n\n"
            "    def forward(self, x):\n"
            "        return reduce_from_parallel(F.linear(x, self.weight)) + self.full.bias",
            ["row-parallel"],
            "parameters; its row-parallel shard",
        ),
    ],
    "adamw": [
        (
            "adamw_step",
            "def adamw_step(p, g, m, v, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):\n"
            "    q = p.clone().requires_grad_(True)\n"
            "    q.grad = g.clone()\n"
            "    opt = torch.optim.AdamW([q], lr, betas, eps, weight_decay, foreach=False)\n"
            "    opt.state[q] = {'step': torch.tensor(float(t - 1)), 'exp_avg': m.clone(),\n"
            "                    'exp_avg_sq': v.clone()}\n"
            "    opt.step()\n"
            "    return q.detach(), opt.state[q]['exp_avg'], opt.state[q]['exp_avg_sq']",
            ["equal torch.optim.AdamW", "only the decay acts", "follows torch.optim.AdamW"],
            OWN,
        ),
        (
            "cosine_schedule",
            "def cosine_schedule(step, max_lr, min_lr, warmup, total):\n"
            "    return optim.cosine_schedule(step, max_lr, min_lr, warmup, total)",
            ["defining points", "at every step", "follows torch.optim.AdamW"],
            OWN,
        ),
    ],
    "memory": [
        (
            "predict_saved_bytes",
            "def predict_saved_bytes(batch, seq_len, d_model, n_heads, d_ff, dtype, causal, "
            "dropout):\n"
            "    from zen import memory\n"
            "    return memory.block_activation_bytes(batch, seq_len, d_model, n_heads, d_ff, "
            "dtype=dtype, causal=causal, dropout=dropout)",
            ["predicted bytes equal"],
            OWN,
        ),
    ],
    "kernels": [
        (
            "fused_softmax",
            "def fused_softmax(x):\n    return kernels.softmax(x)",
            ["fused softmax equals"],
            OWN,
        ),
        (
            "flash_forward",
            "def flash_forward(q, k, v, causal=False):\n"
            "    return flash_attention_forward(q, k, v, causal)",
            ["flash forward equals"],
            OWN,
        ),
    ],
    "integrated_gradients": [
        (
            "trapezoid",
            "def trapezoid(steps):\n    return explain.riemann(steps, 'trapezoid')",
            ["trapezoid points and weights"],
            OWN,
        ),
        (
            "integrated_gradients",
            "def integrated_gradients(model, x, baseline, target, steps):\n"
            "    return explain.integrated_gradients(model, x, baseline, target, steps)",
            ["integrated gradients equal"],
            OWN,
        ),
        (
            "completeness_gap",
            "def completeness_gap(model, attributions, x, baseline, target):\n"
            "    return explain.completeness_delta(model, attributions, x, baseline, target)",
            ["completeness gap equals"],
            OWN,
        ),
    ],
    "nas": [
        (
            "regularized_evolution",
            "def regularized_evolution(space, evaluate, budget, rng, p=10, s=3):\n"
            "    res = search.regularized_evolution(space, evaluate, budget, rng, p, s)\n"
            "    return res.history, res.population",
            ["same proposals as the reference", "beats random search"],
            OWN,
        ),
    ],
    "robustness": [
        (
            "fgsm",
            "def fgsm(model, x, y, eps):\n    return robust.fgsm(model, x, y, eps)",
            ["FGSM equals"],
            OWN,
        ),
        (
            "project",
            "def project(x_adv, x, eps):\n    return robust.project_linf(x_adv, x, eps)",
            ["projection onto"],
            OWN,
        ),
        (
            "pgd",
            "def pgd(model, x, y, eps, alpha, steps):\n"
            "    return robust.pgd(model, x, y, eps, alpha, steps, random_start=False)",
            ["PGD equals"],
            OWN,
        ),
        (
            "per_sample_grads",
            "def per_sample_grads(model, x, y):\n    return privacy.per_sample_grads(model, x, y)",
            ["per-sample gradients equal"],
            OWN,
        ),
        (
            "clip_per_sample",
            "def clip_per_sample(grads, max_norm):\n"
            "    return privacy.clip_per_sample(grads, max_norm, stability=0.0)",
            ["clipping equals"],
            OWN,
        ),
    ],
    "clip": [
        (
            "contrastive_loss",
            "def contrastive_loss(image_features, text_features, log_scale, max_scale=100.0):\n"
            "    u = F.normalize(image_features, dim=-1)\n"
            "    v = F.normalize(text_features, dim=-1)\n"
            "    scale = log_scale.clamp(max=math.log(max_scale)).exp()\n"
            "    return clip.contrastive_loss(u, v, scale)",
            ["contrastive loss equals"],
            OWN,
        ),
        (
            "log_scale_grad",
            "def log_scale_grad(u, v, log_scale):\n"
            "    log_scale = log_scale.detach().clone().requires_grad_()\n"
            "    return torch.autograd.grad(contrastive_loss(u, v, log_scale), log_scale)[0]",
            ["hand-derived gradient"],
            OWN,
        ),
    ],
    "systems": [
        (
            "reliability_bins",
            "def reliability_bins(confidence, correct, n_bins):\n"
            "    return monitor.reliability_bins(confidence, correct, n_bins)",
            ["reliability bins equal"],
            OWN,
        ),
        (
            "expected_calibration_error",
            "def expected_calibration_error(probs, labels, n_bins):\n"
            "    return monitor.expected_calibration_error(probs, labels, n_bins)",
            ["ECE equals"],
            OWN,
        ),
        (
            "fit_temperature",
            "def fit_temperature(logits, labels):\n"
            "    return monitor.fit_temperature(logits, labels)",
            ["fitted temperature minimises"],
            OWN,
        ),
    ],
    "ab_test": [
        (
            "sample_size",
            "def sample_size(p_a, p_b, alpha, power):\n"
            "    return recsys.sample_size(p_a, p_b, alpha, power)",
            ["sample size equals"],
            OWN,
        ),
        (
            "two_proportion_ztest",
            "def two_proportion_ztest(clicks_a, n_a, clicks_b, n_b):\n"
            "    table = [[clicks_a, n_a - clicks_a], [clicks_b, n_b - clicks_b]]\n"
            "    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)\n"
            "    return math.copysign(math.sqrt(chi2), clicks_b / n_b - clicks_a / n_a), p",
            ["z-test equals", "z squared"],
            OWN,
        ),
        (
            "difference_ci",
            "def difference_ci(clicks_a, n_a, clicks_b, n_b, alpha):\n"
            "    result = recsys.ab_test(clicks_a, n_a, clicks_b, n_b, alpha)\n"
            "    return float(result.ci_low), float(result.ci_high)",
            ["interval equals"],
            OWN,
        ),
    ],
}


def _solved_with(
    lab: str, shortcuts: list[tuple[str, str, list[str], str]]
) -> nbformat.NotebookNode:
    """The released lab with the solutions typed in, each shortcut appended to its cell."""
    nb = nbformat.read(ROOT / "labs" / f"{lab}.ipynb", as_version=4)
    solution = blank_regions(nbformat.read(ROOT / "labs" / "source" / f"{lab}.ipynb", 4), set())
    for cell, answer in zip(nb.cells, solution.cells):
        if role(cell) == "solution":
            cell.source = answer.source
    for name, code, _, _ in shortcuts:
        cell = next(
            c
            for c in nb.cells
            if role(c) == "solution"
            and any(
                line.startswith((f"def {name}(", f"class {name}("))
                for line in c.source.splitlines()
            )
        )
        cell.source += "\n\n\n" + code + "\n"
    return nb


def test_every_lab_has_a_shortcut_test():
    labs = {p.stem for p in (ROOT / "labs" / "source").glob("*.ipynb")}
    assert labs == set(SHORTCUTS)


@pytest.mark.parametrize("lab", sorted(SHORTCUTS))
def test_calling_the_reference_loses_the_points(tmp_path, lab):
    nb = _solved_with(lab, SHORTCUTS[lab])
    path = tmp_path / f"{lab}.ipynb"
    nbformat.write(nb, path)
    report = grade(path, cell_timeout=120)
    for _, _, fragments, message in SHORTCUTS[lab]:
        for fragment in fragments:
            check = next((c for c in report.checks if fragment in c.name), None)
            assert check is not None, f"no check named like {fragment!r}: {report.to_json()}"
            assert check.points < check.max_points, f"{lab}: {check.name} passed a shortcut"
            assert message in check.message, f"{lab}: {check.name} said {check.message!r}"
