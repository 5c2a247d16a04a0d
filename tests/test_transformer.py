"""Reference code of the Transformer chapter.

zen blocks equal PyTorch's and Hugging Face's with weights copied.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from zen.attention import KVCache
from zen.positions import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    sinusoidal_positions,
)
from zen.transformer import (
    BlockConfig,
    Decoder,
    Encoder,
    EncoderDecoder,
    FeedForward,
    TransformerBlock,
)

ATOL = 1e-5


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_block_matches_torch(norm_first, activation, device):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(
        16, 4, 24, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    ours = TransformerBlock(BlockConfig(16, 4, 24, norm_first=norm_first, activation=activation))
    ours.load_torch_weights(ref)
    ref, ours = ref.to(device), ours.to(device)
    x = torch.randn(3, 7, 16, device=device, requires_grad=True)
    pad = torch.zeros(3, 7, dtype=torch.bool, device=device)
    pad[0, 5:] = True
    a, b = ours(x, key_padding_mask=pad), ref(x, src_key_padding_mask=pad)
    assert torch.allclose(a, b, atol=ATOL)
    g = torch.randn_like(a)
    assert torch.allclose(*(torch.autograd.grad(o, x, g)[0] for o in (a, b)), atol=ATOL)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_stack_matches_torch(norm_first, device):
    torch.manual_seed(0)
    layer = nn.TransformerDecoderLayer(
        16, 2, 32, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first
    )
    ref = nn.TransformerDecoder(layer, 2, norm=nn.LayerNorm(16) if norm_first else None).to(device)
    ours = Decoder(
        BlockConfig(16, 2, 32, norm_first=norm_first, activation="relu", cross_attention=True), 2
    ).to(device)
    for o, r in zip(ours.layers, ref.layers):
        o.load_torch_weights(r)
    if norm_first:
        ours.norm.load_state_dict(ref.norm.state_dict())
    x, mem = torch.randn(2, 5, 16, device=device), torch.randn(2, 9, 16, device=device)
    mem_pad = torch.zeros(2, 9, dtype=torch.bool, device=device)
    mem_pad[1, 6:] = True
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(5, device=device)
    b = ref(x, mem, tgt_mask=tgt_mask, tgt_is_causal=True, memory_key_padding_mask=mem_pad)
    a = ours(x, mem, memory_key_padding_mask=mem_pad)
    assert torch.allclose(a, b, atol=ATOL)


def test_encoder_stack_matches_torch(device):
    torch.manual_seed(1)
    layer = nn.TransformerEncoderLayer(
        12, 3, 20, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    ref = nn.TransformerEncoder(layer, 3, norm=nn.LayerNorm(12), enable_nested_tensor=False).to(
        device
    )
    ours = Encoder(BlockConfig(12, 3, 20, norm_first=True, use_builtin=True), 3).to(device)
    for o, r in zip(ours.layers, ref.layers):
        o.load_torch_weights(r)
    ours.norm.load_state_dict(ref.norm.state_dict())
    x = torch.randn(2, 6, 12, device=device)
    assert torch.allclose(ours(x), ref(x), atol=ATOL)


def test_gpt2_weights_map_onto_a_decoder_only_stack():
    """zen.gpt's GPT-2 block map reproduces HF GPT2Model.

    The map splits the fused c_attn and transposes Conv1D.
    """
    pytest.importorskip("transformers")
    from transformers import GPT2Config, GPT2Model

    from zen.gpt import load_hf_gpt2_block

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=50,
        n_positions=16,
        n_embd=32,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    hf = GPT2Model(cfg).eval()
    block = BlockConfig(
        32, 4, norm_first=True, activation="gelu_tanh", layer_norm_eps=cfg.layer_norm_epsilon
    )
    ours = Decoder(block, 2).eval()
    for o, h in zip(ours.layers, hf.h):
        load_hf_gpt2_block(o, h)
    ours.norm.load_state_dict(hf.ln_f.state_dict())
    ids = torch.randint(0, 50, (2, 9))
    x = hf.wte(ids) + hf.wpe(torch.arange(9))
    assert torch.allclose(ours(x), hf(ids).last_hidden_state, atol=ATOL)


def test_bert_weights_map_onto_a_post_norm_encoder():
    pytest.importorskip("transformers")
    from transformers import BertConfig, BertModel

    from zen.bert import load_hf_bert_layer

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=16,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    hf = BertModel(cfg, add_pooling_layer=False).eval()
    ours = Encoder(
        BlockConfig(32, 4, 48, activation="gelu", layer_norm_eps=cfg.layer_norm_eps), 2
    ).eval()
    for o, h in zip(ours.layers, hf.encoder.layer):
        load_hf_bert_layer(o, h)
    ids = torch.randint(0, 50, (2, 8))
    attention_mask = torch.ones(2, 8, dtype=torch.long)
    attention_mask[1, 5:] = 0
    ref = hf(ids, attention_mask=attention_mask).last_hidden_state
    with torch.no_grad():
        out = ours(hf.embeddings(ids), key_padding_mask=attention_mask == 0)
    assert torch.allclose(out[0], ref[0], atol=ATOL)
    assert torch.allclose(out[1, :5], ref[1, :5], atol=ATOL)  # padded query rows are never read


def test_decoder_cache_equals_full_recompute(device):
    torch.manual_seed(0)
    dec = Decoder(BlockConfig(16, 4, norm_first=True), 2).to(device).eval()
    x = torch.randn(1, 6, 16, device=device)
    caches = [KVCache() for _ in dec.layers]
    steps = [dec(x[:, :2], caches=caches)] + [
        dec(x[:, t : t + 1], caches=caches) for t in range(2, 6)
    ]
    assert torch.allclose(torch.cat(steps, 1), dec(x), atol=ATOL)


def test_sinusoidal_positions_follow_the_formula():
    pe = sinusoidal_positions(50, 16)
    for p, i in [(0, 0), (7, 0), (13, 3), (49, 7)]:
        angle = p / 10000 ** (2 * i / 16)
        assert math.isclose(pe[p, 2 * i].item(), math.sin(angle), abs_tol=1e-6)
        assert math.isclose(pe[p, 2 * i + 1].item(), math.cos(angle), abs_tol=1e-6)
    x = torch.zeros(2, 5, 16)
    assert torch.equal(SinusoidalPositionalEncoding(16, 50)(x, offset=3)[1], pe[3:8])


def test_learned_positions_add_rows_of_weight():
    pos = LearnedPositionalEmbedding(10, 4)
    x = torch.randn(2, 3, 4)
    assert torch.equal(pos(x, offset=2), x + pos.weight[2:5])


def test_rope_matches_complex_rotation_and_is_relative():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    ours = rope(x.float(), offset=4).double()
    # reference: the pair (x_i, x_{i+4}) is the complex number x_i + i·x_{i+4},
    # multiplied by e^{i p θ_i}
    theta = 10000.0 ** (-torch.arange(0, 8, 2, dtype=torch.float64) / 8)
    z = torch.complex(x[..., :4], x[..., 4:]) * torch.polar(
        torch.ones(5, 4, dtype=torch.float64),
        torch.arange(4, 9, dtype=torch.float64)[:, None] * theta,
    )
    assert torch.allclose(ours, torch.cat([z.real, z.imag], -1), atol=1e-5)
    q, k = torch.randn(1, 8), torch.randn(1, 8)
    dots = [(rope(q, offset=p) * rope(k, offset=p - 3)).sum().item() for p in (3, 10, 40)]
    assert max(dots) - min(dots) < 1e-4  # depends only on the distance 3


def test_encoder_decoder_shapes_tying_and_greedy_decode():
    torch.manual_seed(0)
    model = EncoderDecoder(
        11, 13, d_model=16, n_heads=2, n_layers=2, d_ff=32, dropout=0.0, max_len=20
    )
    assert model.lm_head.weight is model.tgt_embed.weight
    src, tgt = torch.randint(0, 11, (3, 7)), torch.randint(0, 13, (3, 5))
    assert model(src, tgt).shape == (3, 5, 13)
    out = model.eval().greedy_decode(src, bos_id=0, max_new_tokens=4)
    assert out.shape == (3, 4)
    # greedy output is the argmax of the teacher-forced logits on its own prefix
    logits = model(src, torch.cat([torch.zeros(3, 1, dtype=torch.long), out[:, :-1]], 1))
    assert torch.equal(logits.argmax(-1), out)
    shared = EncoderDecoder(9, 9, d_model=8, n_heads=2, n_layers=1, d_ff=8, share_embeddings=True)
    assert shared.src_embed is shared.tgt_embed


def test_feedforward_and_bad_inputs():
    ffn = FeedForward(4, 8, activation="relu")
    x = torch.randn(3, 4)
    assert torch.allclose(ffn(x), ffn.fc2(torch.relu(ffn.fc1(x))))
    with pytest.raises(ValueError, match=r"activation must be one of \[.*'relu'.*\], got 'swish'"):
        FeedForward(4, 8, activation="swish")
    with pytest.raises(ValueError, match="d_ff must be a positive integer"):
        FeedForward(4, 0)
    block = TransformerBlock(BlockConfig(8, 2, cross_attention=True))
    with pytest.raises(ValueError, match="pass memory"):
        block(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match=r"x must be 3-D.*\(3, 8\)"):
        block(torch.randn(3, 8), torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="no cross-attention"):
        TransformerBlock(BlockConfig(8, 2))(torch.randn(1, 3, 8), torch.randn(1, 2, 8))
    with pytest.raises(ValueError, match="max_len is 4"):
        SinusoidalPositionalEncoding(8, 4)(torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="d_head must be even"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="share_embeddings needs src_vocab_size == tgt_vocab_size"):
        EncoderDecoder(5, 6, share_embeddings=True)
    with pytest.raises(ValueError, match="one KVCache per layer"):
        Decoder(BlockConfig(8, 2), 2)(torch.randn(1, 2, 8), caches=[KVCache()])


def test_rope_inside_attention_with_cache_equals_full_recompute():
    torch.manual_seed(0)
    block = TransformerBlock(
        BlockConfig(16, 2, causal=True, norm_first=True), rope=RotaryEmbedding(8)
    ).eval()
    x = torch.randn(2, 5, 16)
    cache = KVCache()
    steps = [block(x[:, :1], cache=cache)] + [
        block(x[:, t : t + 1], cache=cache) for t in range(1, 5)
    ]
    assert torch.allclose(torch.cat(steps, 1), block(x), atol=ATOL)


def test_load_torch_weights_rejects_what_does_not_map():
    enc = nn.TransformerEncoderLayer(16, 4, 24, batch_first=True)
    with pytest.raises(ValueError, match="norm_first mismatch"):
        TransformerBlock(BlockConfig(16, 4, 24, norm_first=True)).load_torch_weights(enc)
    with pytest.raises(ValueError, match="cross_attention=True"):
        TransformerBlock(BlockConfig(16, 4, 24, cross_attention=True)).load_torch_weights(enc)
    with pytest.raises(RuntimeError, match="size mismatch"):
        TransformerBlock(BlockConfig(16, 4, 32)).load_torch_weights(enc)  # d_ff differs
    with pytest.raises(TypeError, match="got Linear"):
        TransformerBlock(BlockConfig(16, 4, 24)).load_torch_weights(nn.Linear(16, 16))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: BlockConfig(10, 3),
            ValueError,
            "d_model must be divisible by n_heads, got d_model=10, n_heads=3",
        ),
        (
            lambda: BlockConfig(8, 2, activation="tanh"),
            ValueError,
            r"activation must be one of .*got 'tanh'",
        ),
        (
            lambda: BlockConfig(8, 2, dropout=1.5),
            ValueError,
            r"dropout must be in \[0.0, 1.0\], got 1.5",
        ),
        (
            lambda: BlockConfig(8, 2, layer_norm_eps=0.0),
            ValueError,
            "layer_norm_eps must be positive, got 0.0",
        ),
        (
            lambda: TransformerBlock(dict(d_model=8, n_heads=2)),
            TypeError,
            "config must be a BlockConfig, got dict",
        ),
        (
            lambda: Encoder(BlockConfig(8, 2, causal=True), 2),
            ValueError,
            "bidirectional.*causal=True",
        ),
        (
            lambda: Encoder(BlockConfig(8, 2), 0),
            ValueError,
            "n_layers must be a positive integer, got 0",
        ),
        (
            lambda: EncoderDecoder(5, 6, positional="rope"),
            ValueError,
            r"positional must be one of .*got 'rope'",
        ),
    ],
)
def test_configs_reject_bad_values(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_encoder_decoder_rejects_bad_token_ids():
    model = EncoderDecoder(5, 6, d_model=8, n_heads=2, n_layers=1, d_ff=8)
    with pytest.raises(ValueError, match=r"src must lie in \[0, 5\), got values in \[0, 5\]"):
        model(torch.tensor([[0, 5]]), torch.tensor([[1]]))
    with pytest.raises(TypeError, match="tgt_in must hold integer token ids"):
        model(torch.tensor([[0, 1]]), torch.tensor([[1.0]]))
    with pytest.raises(ValueError, match=r"tgt_in must be 2-D, got shape \(3,\)"):
        model(torch.tensor([[0, 1]]), torch.tensor([1, 2, 3]))


def test_decoder_is_causal_and_stacks_share_nothing():
    dec = Decoder(BlockConfig(8, 2), 2)
    assert all(layer.causal for layer in dec.layers) and dec.layers[0].ffn is not dec.layers[1].ffn
