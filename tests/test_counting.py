"""Counting in the Transformer chapter: formulas equal what modules and FlopCounterMode give.

The modules are built by zen and by Hugging Face.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from zen.counting import (
    GPT2_SMALL,
    VASWANI_BASE,
    VASWANI_BIG,
    VASWANI_TABLE3,
    TransformerSize,
    count_parameters,
    forward_flops,
    param_count,
    training_flops,
)
from zen.positions import LearnedPositionalEmbedding
from zen.transformer import BlockConfig, Decoder, EncoderDecoder


def _encoder_decoder(s: TransformerSize, **kw) -> EncoderDecoder:
    return EncoderDecoder(
        s.vocab_size,
        s.vocab_size,
        d_model=s.d_model,
        n_heads=s.n_heads,
        n_layers=s.n_enc_layers,
        n_dec_layers=s.n_layers,
        d_ff=s.d_ff,
        dropout=0.0,
        share_embeddings=s.shared_embeddings,
        **kw,
    )


@pytest.mark.parametrize("row", ["base", "(C) N=2", "(C) d_model=256", "(C) d_ff=4096", "big"])
def test_formula_equals_the_module_zen_builds(row):
    size, _ = VASWANI_TABLE3[row]
    with torch.device("meta"):
        model = _encoder_decoder(size)
    assert count_parameters(model) == param_count(size)["total"]


def test_table3_is_reproduced_and_the_gap_is_the_vocabulary():
    for name, (size, paper_m) in VASWANI_TABLE3.items():
        ours = param_count(size)["total"] / 1e6
        assert abs(ours - paper_m) / paper_m < 0.07, (name, ours, paper_m)
        # the vocabulary size that would make the count exact: ≈ 41k for every base-model row
        implied = (paper_m * 1e6 - param_count(size)["non_embedding"]) / size.d_model
        if name != "big":
            assert 40_000 < implied < 42_000, (name, implied)
    assert round(param_count(VASWANI_BIG)["total"] / 1e6) == 214
    assert round(param_count(VASWANI_BASE)["total"] / 1e6) == 63


def test_gpt2_small_count_equals_hugging_face():
    pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        hf = GPT2LMHeadModel(GPT2Config())
    assert count_parameters(hf) == param_count(GPT2_SMALL)["total"] == 124_439_808


def test_decoder_only_count_equals_zen_modules():
    s = TransformerSize(
        d_model=32, n_heads=4, d_ff=64, n_layers=3, vocab_size=100, max_len=20, final_norm=True
    )
    parts = nn.ModuleList(
        [
            nn.Embedding(100, 32),
            LearnedPositionalEmbedding(20, 32),
            Decoder(BlockConfig(32, 4, 64, norm_first=True), 3),
        ]
    )
    assert count_parameters(parts) == param_count(s)["total"]
    untied = param_count(TransformerSize(32, 4, 64, 3, 100, tie_output=False, bias=False))
    assert untied["lm_head"] == 3200 and untied["decoder"] == 3 * (
        4 * 32 * 32 + 2 * 32 * 64 + 2 * 32
    )


def _measured_flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def test_forward_flops_equal_flop_counter_for_an_encoder_decoder():
    torch.manual_seed(0)
    s = TransformerSize(d_model=32, n_heads=4, d_ff=48, n_layers=2, n_enc_layers=3, vocab_size=40)
    model = _encoder_decoder(s, tie_output=True).eval()
    src, tgt = torch.randint(0, 40, (2, 11)), torch.randint(0, 40, (2, 7))
    measured = _measured_flops(lambda: model(src, tgt))
    assert measured == 2 * forward_flops(s, seq_len=7, src_len=11)["total"]


def test_forward_flops_of_a_decoder_only_stack_and_the_6n_rule():
    torch.manual_seed(0)
    s = TransformerSize(d_model=64, n_heads=4, d_ff=256, n_layers=2, vocab_size=1)
    dec = Decoder(BlockConfig(64, 4, 256, norm_first=True), 2)
    x = torch.randn(1, 16, 64, requires_grad=True)
    fwd = forward_flops(s, seq_len=16)
    assert _measured_flops(lambda: dec(x)) == fwd["total"] - fwd["lm_head"]
    train = _measured_flops(lambda: dec(x).sum().backward())
    assert train == 3 * (fwd["total"] - fwd["lm_head"])  # backward = 2 × forward
    n = param_count(s)["non_embedding"]
    assert abs(train / 16 - 6 * n) / (6 * n) < 0.1  # the attention scores are the (small) rest
    assert training_flops(n, 16) == 6 * n * 16


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="d_model must be divisible by n_heads"):
        TransformerSize(10, 3, 8, 1, 5)
    with pytest.raises(ValueError, match="vocab_size must be a positive integer"):
        TransformerSize(8, 2, 8, 1, 0)
    with pytest.raises(ValueError, match="seq_len must be a positive integer"):
        forward_flops(VASWANI_BASE, 0)
