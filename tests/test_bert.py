"""zen.bert: masking statistics, inputs, equality with Hugging Face BERT, heads, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zen.bert import (
    IGNORE_INDEX,
    SPECIAL_TOKENS,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
    encode_batch,
    mask_tokens,
)

ATOL = 1e-5
PAD, CLS, SEP, MASK = 0, 1, 2, 3
SPECIAL = (PAD, CLS, SEP, MASK)


def small_config(**kw) -> BertConfig:
    base = dict(vocab_size=60, d_model=32, n_layers=2, n_heads=4, d_ff=48, max_len=24, dropout=0.0)
    return BertConfig(**{**base, **kw})


def padded_batch(vocab: int = 60, B: int = 4, L: int = 12, seed: int = 0):
    """Random ``[CLS] … [SEP] [PAD]…`` rows of different lengths, with two segments."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (B, L), generator=g)
    lengths = torch.tensor([L, L - 3, 5, 3][:B])
    attention_mask = (torch.arange(L) < lengths[:, None]).long()
    ids[:, 0] = CLS
    ids[torch.arange(B), lengths - 1] = SEP
    ids[attention_mask == 0] = PAD
    token_type_ids = ((torch.arange(L) >= lengths[:, None] // 2) & (attention_mask == 1)).long()
    return ids, token_type_ids, attention_mask


# ------------------------------------------------------------------------------------ masking
def test_mask_tokens_follows_the_80_10_10_rule():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 1000, (200, 500), generator=g)
    ids[:, 0], ids[:, -1], ids[:, -50:-1] = CLS, SEP, PAD
    inputs, labels = mask_tokens(ids, MASK, SPECIAL, 1000, mask_prob=0.15, generator=g)
    chosen = labels != IGNORE_INDEX
    ordinary = ~torch.isin(ids, torch.tensor(SPECIAL))
    assert not (chosen & ~ordinary).any(), "a special token or padding was chosen"
    assert (labels[chosen] == ids[chosen]).all()
    assert (inputs[~chosen] == ids[~chosen]).all(), "an unchosen token was changed"
    share = chosen.sum() / ordinary.sum()
    assert abs(share - 0.15) < 0.005
    n = chosen.sum()
    masked = (inputs[chosen] == MASK).sum() / n
    kept = (inputs[chosen] == ids[chosen]).sum() / n
    random = 1 - masked - kept
    assert (
        abs(masked - 0.8) < 0.01
        and abs(kept - 0.1 - 1 / 996 * 0.1) < 0.01
        and abs(random - 0.1) < 0.01
    )
    assert not torch.isin(inputs[chosen & (inputs != MASK)], torch.tensor(SPECIAL)).any(), (
        "random ids must be ordinary"
    )


def test_mask_tokens_is_reproducible_and_keeps_device_and_dtype(device):
    ids = torch.randint(4, 50, (3, 20), device=device)
    a = mask_tokens(ids, MASK, SPECIAL, 50, generator=torch.Generator().manual_seed(1))
    b = mask_tokens(ids, MASK, SPECIAL, 50, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert a[0].device == ids.device and a[0].dtype == ids.dtype and a[1].dtype == torch.long


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(input_ids=torch.rand(2, 3)), TypeError, "integer"),
        (dict(mask_prob=0.0), ValueError, "mask_prob"),
        (dict(mask_token_id=7), ValueError, "mask_token_id"),
        (dict(vocab_size=5), ValueError, r"input_ids must lie in \[0, 5\)"),
        (dict(vocab_size=0), ValueError, "vocab_size"),
        (dict(input_ids=[1, 2]), TypeError, "torch.Tensor"),
    ],
)
def test_mask_tokens_rejects_bad_input(kwargs, error, match):
    args = dict(
        input_ids=torch.tensor([[1, 8, 9, 2]]),
        mask_token_id=MASK,
        special_ids=SPECIAL,
        vocab_size=10,
    )
    with pytest.raises(error, match=match):
        mask_tokens(**{**args, **kwargs})


# ----------------------------------------------------------------------------------- encoding
class WordTokenizer:
    """A tiny stand-in tokenizer: one id per whitespace-separated word."""

    def __init__(self) -> None:
        self.ids = {t: i for i, t in enumerate(SPECIAL_TOKENS)}

    def token_to_id(self, token: str) -> int:
        return self.ids[token]

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        return [self.ids.setdefault(w, len(self.ids)) for w in text.split()]


def test_encode_batch_builds_cls_sep_segments_and_padding():
    tok = WordTokenizer()
    out = encode_batch(tok, ["a b c", "d"], pairs=["e f", "g h i"], max_len=16)
    ids, types, mask = out["input_ids"], out["token_type_ids"], out["attention_mask"]
    a, b, c, d, e, f, g, h, i = (tok.ids[w] for w in "abcdefghi")
    assert ids.tolist() == [[CLS, a, b, c, SEP, e, f, SEP], [CLS, d, SEP, g, h, i, SEP, PAD]]
    assert types.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1, 0]]
    assert mask.tolist() == [[1] * 8, [1] * 7 + [0]]
    single = encode_batch(tok, ["a b c d e f g"], max_len=5)["input_ids"]
    assert single.tolist() == [[CLS, a, b, c, SEP]]  # truncated to max_len


def test_encode_batch_rejects_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        encode_batch(WordTokenizer(), [])
    with pytest.raises(ValueError, match="one entry per text"):
        encode_batch(WordTokenizer(), ["a"], pairs=["b", "c"])
    with pytest.raises(ValueError, match="no room"):
        encode_batch(WordTokenizer(), ["a"], pairs=["b"], max_len=3)


# ------------------------------------------------------------------------- Hugging Face parity
@pytest.mark.parametrize(
    "hf_kwargs",
    [
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48),
        dict(
            hidden_size=24,
            num_hidden_layers=3,
            num_attention_heads=2,
            intermediate_size=40,
            hidden_act="gelu_new",
            type_vocab_size=3,
            layer_norm_eps=1e-6,
        ),
    ],
)
def test_from_hf_matches_transformers_bert_on_padded_batches(hf_kwargs, device):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=60, max_position_embeddings=24, **hf_kwargs)
    hf = transformers.BertModel(cfg).to(device).eval()
    ours = BertModel.from_hf(hf).eval()
    ids, types, mask = (t.to(device) for t in padded_batch())
    ref = hf(ids, token_type_ids=types, attention_mask=mask)
    out = ours(ids, types, mask)
    assert out.last_hidden_state.shape == (4, 12, hf_kwargs["hidden_size"])
    assert torch.allclose(
        out.last_hidden_state, ref.last_hidden_state, atol=ATOL
    )  # padded rows too
    assert torch.allclose(out.pooler_output, ref.pooler_output, atol=ATOL)
    no_mask = hf(ids).last_hidden_state  # defaults: segment 0 everywhere, no padding
    assert torch.allclose(ours(ids).last_hidden_state, no_mask, atol=ATOL)


def test_mlm_head_matches_transformers_and_is_tied(device):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(1)
    cfg = transformers.BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=24,
    )
    hf = transformers.BertForMaskedLM(cfg).to(device).eval()
    ours = BertForMaskedLM.from_hf(hf).eval()
    ids, types, mask = (t.to(device) for t in padded_batch())
    assert torch.allclose(
        ours(ids, types, mask), hf(ids, token_type_ids=types, attention_mask=mask).logits, atol=ATOL
    )
    assert ours.decoder_weight is ours.bert.embeddings.word.weight


def test_mlm_loss_fast_path_equals_full_cross_entropy(device):
    torch.manual_seed(0)
    model = BertForMaskedLM(small_config()).to(device).eval()
    ids, types, mask = (t.to(device) for t in padded_batch())
    inputs, labels = mask_tokens(
        ids, MASK, SPECIAL, 60, mask_prob=0.5, generator=torch.Generator().manual_seed(0)
    )
    full = F.cross_entropy(
        model(inputs, types, mask).flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
    )
    assert torch.allclose(model.loss(inputs, labels, types, mask), full, atol=ATOL)
    with pytest.raises(ValueError, match="select no position"):
        model.loss(ids, torch.full_like(ids, IGNORE_INDEX))


def test_builtin_attention_path_agrees(device):
    torch.manual_seed(0)
    readable = BertModel(small_config()).to(device).eval()
    fused = BertModel(small_config(use_builtin=True)).to(device).eval()
    fused.load_state_dict(readable.state_dict())
    ids, types, mask = (t.to(device) for t in padded_batch())
    assert torch.allclose(readable(ids, types, mask)[0], fused(ids, types, mask)[0], atol=ATOL)


def test_attention_maps_shape_rows_and_padding():
    torch.manual_seed(0)
    model = BertModel(small_config()).eval()
    ids, types, mask = padded_batch()
    maps = model.attention_maps(ids, types, mask)
    assert maps.shape == (2, 4, 4, 12, 12)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 4, 4, 12))
    assert (maps[:, 2, :, :, 5:] == 0).all(), "padding keys must get zero attention"


def test_classifier_head_and_from_pretrained(device):
    torch.manual_seed(0)
    encoder = BertModel(small_config()).to(device)
    clf = BertForSequenceClassification.from_pretrained(encoder, num_labels=3).eval()
    ids, types, mask = (t.to(device) for t in padded_batch())
    logits = clf(ids, types, mask)
    assert logits.shape == (4, 3)
    assert torch.equal(
        clf.bert(ids, types, mask).pooler_output, encoder.eval()(ids, types, mask).pooler_output
    )
    assert (
        clf.bert.embeddings.word.weight.data_ptr() != encoder.embeddings.word.weight.data_ptr()
    ), "a copy"
    loss = F.cross_entropy(logits, torch.tensor([0, 1, 2, 0], device=device))
    loss.backward()
    assert (
        clf.classifier.weight.grad is not None and clf.bert.embeddings.word.weight.grad is not None
    )


def test_from_pretrained_can_change_dropout(device):
    torch.manual_seed(0)
    encoder = BertModel(small_config(dropout=0.1)).to(device)
    clf = BertForSequenceClassification.from_pretrained(encoder, num_labels=2, dropout=0.0)
    assert clf.config.dropout == 0.0 and encoder.config.dropout == 0.1
    assert clf.dropout.p == 0.0 and clf.bert.embeddings.dropout.p == 0.0
    ids, types, mask = (t.to(device) for t in padded_batch())
    clf.train()  # no dropout left: training mode gives the pre-trained encoder's outputs
    assert torch.allclose(
        clf.bert(ids, types, mask).last_hidden_state,
        encoder.eval()(ids, types, mask).last_hidden_state,
    )
    with pytest.raises(ValueError, match="dropout"):
        BertForSequenceClassification.from_pretrained(encoder, num_labels=2, dropout=1.5)


def test_padding_does_not_change_real_tokens():
    torch.manual_seed(0)
    model = BertModel(small_config()).eval()
    ids = torch.tensor([[CLS, 7, 8, 9, SEP]])
    padded = torch.tensor([[CLS, 7, 8, 9, SEP, PAD, PAD]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    assert torch.allclose(model(ids)[0], model(padded, attention_mask=mask)[0][:, :5], atol=ATOL)


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(input_ids=torch.zeros(5, dtype=torch.long)), ValueError, "input_ids must be 2-D"),
        (dict(input_ids=torch.zeros(1, 5)), TypeError, "integer"),
        (dict(input_ids=torch.full((1, 5), 60)), ValueError, r"\[0, 60\)"),
        (dict(input_ids=torch.zeros(1, 30, dtype=torch.long)), ValueError, "max_len"),
        (
            dict(token_type_ids=torch.zeros(1, 4, dtype=torch.long)),
            ValueError,
            "token_type_ids must have the shape",
        ),
        (dict(token_type_ids=torch.full((1, 5), 2)), ValueError, "token_type_ids must lie"),
        (dict(attention_mask=torch.ones(2, 5)), ValueError, "attention_mask must have the shape"),
    ],
)
def test_bert_rejects_bad_input(kwargs, error, match):
    model = BertModel(small_config())
    args = dict(input_ids=torch.tensor([[CLS, 5, 6, 7, SEP]]))
    with pytest.raises(error, match=match):
        model(**{**args, **kwargs})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d_model=30), "divisible"),
        (dict(activation="tanh"), "activation"),
        (dict(n_layers=0), "n_layers"),
        (dict(dropout=1.5), "dropout"),
    ],
)
def test_config_rejects_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        small_config(**kwargs)


def test_from_hf_rejects_unsupported_configs():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=48,
        hidden_act="tanh",
    )
    with pytest.raises(ValueError, match="hidden_act"):
        BertConfig.from_hf(cfg)
    with pytest.raises(ValueError, match="num_labels"):
        BertForSequenceClassification(small_config(), 0)


# ------------------------------------------------------------------------ the labelled sentences
def test_pydoc_topic_sentences_are_labelled_once_and_deterministic():
    from zen.data import PYDOC_FAMILIES, pydoc_topic_sentences

    sentences, labels, names = pydoc_topic_sentences()
    assert names == list(PYDOC_FAMILIES) and len(sentences) == len(labels) > 1000
    assert len(set(sentences)) == len(sentences), "each sentence appears once, with one label"
    assert labels.dtype == torch.long and set(labels.tolist()) == set(range(len(names)))
    assert min(labels.bincount().tolist()) >= 100
    assert all(40 <= len(s) <= 250 for s in sentences)
    assert pydoc_topic_sentences()[0] == sentences
    with pytest.raises(ValueError, match="max_chars"):
        pydoc_topic_sentences(min_chars=50, max_chars=10)
