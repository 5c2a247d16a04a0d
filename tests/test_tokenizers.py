"""zen.tokenizers: byte-level BPE training, encoding, decoding, special tokens, persistence."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from zen import data
from zen.tokenizers import (
    GPT2_SPLIT_PATTERN,
    N_BYTES,
    BPETokenizer,
    compression_ratio,
    merge_pair,
    train_bpe,
)

SPECIALS = ["[CLS]", "[SEP]", "[MASK]", "[PAD]", "<|endoftext|>"]


@pytest.fixture(scope="module")
def corpus() -> str:
    return data.pydoc_corpus(100_000)


@pytest.fixture(scope="module")
def tok(corpus) -> BPETokenizer:
    return train_bpe(corpus, N_BYTES + 400 + len(SPECIALS), special_tokens=SPECIALS)


def naive_train(words: list[list[int]], n_merges: int) -> list[tuple[int, int]]:
    """The textbook algorithm: re-count every pair after every merge (ties to the smaller pair)."""
    merges = []
    for k in range(n_merges):
        counts = Counter(p for w in words for p in zip(w, w[1:]))
        if not counts or max(counts.values()) < 2:
            break
        best = max(counts.values())
        pair = min(p for p, c in counts.items() if c == best)
        merges.append(pair)
        words = [merge_pair(w, pair, N_BYTES + k) for w in words]
    return merges


def test_merge_pair():
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 9) == [9, 3, 9]
    assert merge_pair([5, 5, 5], (5, 5), 7) == [7, 5]  # left to right, non-overlapping
    assert merge_pair([], (1, 2), 9) == []


def test_incremental_training_equals_naive(corpus):
    text = corpus[:15_000]
    tok = train_bpe(text, N_BYTES + 80)
    words = [list(w.encode()) for w in tok.pretokenize(text)]
    assert tok.merges == naive_train(words, 80)


def test_vocab_layout_and_sizes(tok):
    assert tok.vocab_size == len(tok) == N_BYTES + 400 + len(SPECIALS)
    assert len(tok.merges) == 400
    assert all(tok.vocab[i] == bytes([i]) for i in range(N_BYTES))
    for i, (a, b) in enumerate(tok.merges):
        assert tok.vocab[N_BYTES + i] == tok.vocab[a] + tok.vocab[b]
    assert [tok.special_tokens[s] for s in SPECIALS] == list(range(N_BYTES + 400, tok.vocab_size))


def test_pretokenizer_covers_every_character():
    rng = random.Random(0)
    pool = "abc XYZ_09 \t\n\r.,;:!?'\"()[]{}é世界🙂\u0301\u00b2\u2028"
    for _ in range(200):
        s = "".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
        assert "".join(BPETokenizer().pretokenize(s)) == s


@pytest.mark.parametrize(
    "text",
    [
        "",
        "def f(x):\n    return x ** 2",
        "naïve café — 世界 🙂 \u0000 \t\r\n",
        "lone surrogate \ud800 stays",
        "[CLS] sentence one [SEP] two [MASK] [PAD][PAD]",
        "   leading and trailing   ",
    ],
)
def test_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_round_trip_random_unicode(tok):
    rng = random.Random(1)
    for _ in range(50):
        s = "".join(
            chr(
                rng.choice(
                    [rng.randint(0, 0x7F), rng.randint(0x80, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]
                )
            )
            for _ in range(rng.randint(1, 30))
        )
        assert tok.decode(tok.encode(s)) == s


def test_compresses_the_training_text(tok, corpus):
    assert compression_ratio(tok, corpus) > 2.0
    assert compression_ratio(BPETokenizer(), corpus) == 1.0


def test_special_tokens(tok):
    ids = tok.encode("[CLS] hi [SEP]")
    assert ids[0] == tok.special_tokens["[CLS]"] and ids[-1] == tok.special_tokens["[SEP]"]
    plain = tok.encode("[CLS]", allow_special=False)
    assert tok.special_tokens["[CLS]"] not in plain and tok.decode(plain) == "[CLS]"
    assert tok.token_to_id("[MASK]") == tok.special_tokens["[MASK]"]
    # adding a token later gives the next id; re-adding keeps the id
    extra = BPETokenizer(tok.merges, SPECIALS)
    assert extra.add_special_tokens(["<unk>", "[CLS]"]) == [
        tok.vocab_size,
        tok.special_tokens["[CLS]"],
    ]
    # no merge spans a special token: it is removed from the corpus before counting
    t2 = train_bpe("[SEP]" * 50 + " x" * 3, N_BYTES + 1 + 10, special_tokens=["[SEP]"])
    assert all(b"[" not in t2.vocab[N_BYTES + i] for i in range(len(t2.merges)))


def test_encode_is_deterministic_and_uses_merges(tok):
    assert tok.encode(" the") == [tok.token_to_id(" the")]
    assert tok.encode("the cat") == tok.encode("the cat")


def test_save_load(tok, tmp_path):
    path = tmp_path / "bpe.json"
    tok.save(path)
    back = BPETokenizer.load(path)
    assert back.merges == tok.merges and back.special_tokens == tok.special_tokens
    text = "[CLS] A tokenizer saved and loaded 🙂"
    assert back.encode(text) == tok.encode(text)
    path.write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a zen BPE tokenizer"):
        BPETokenizer.load(path)


def test_no_pattern_merges_across_words():
    t = train_bpe("ab ab ab ab", N_BYTES + 3, pattern=None)
    assert t.decode(t.encode("ab ab ab ab")) == "ab ab ab ab"
    assert len(t.encode("ab ab ab ab")) < len(BPETokenizer(pattern=None).encode("ab ab ab ab"))


def test_training_is_fast(corpus):
    start = time.perf_counter()
    train_bpe(corpus, N_BYTES + 300)
    assert time.perf_counter() - start < 10  # seconds; a generous bound on 2 slow cores


# ------------------------------------------------------------------ bad input
def test_rejects_empty_corpus():
    with pytest.raises(ValueError, match="empty corpus"):
        train_bpe("", 300)
    with pytest.raises(ValueError, match="empty corpus"):
        train_bpe(["", ""], 300)


def test_rejects_vocab_below_byte_alphabet():
    with pytest.raises(ValueError, match="at least 256"):
        train_bpe("hello", 100)
    with pytest.raises(ValueError, match="at least 258"):
        train_bpe("hello", 257, special_tokens=["[CLS]", "[SEP]"])
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        train_bpe("hello", 300.0)


def test_rejects_bad_text_and_ids(tok):
    with pytest.raises(TypeError, match="text must be a str"):
        train_bpe(b"bytes", 300)
    with pytest.raises(TypeError, match="text must be a str"):
        tok.encode(123)
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="token ids must be integers"):
        tok.decode([1.5])


def test_rejects_bad_special_tokens_and_merges():
    with pytest.raises(ValueError, match="non-empty strings"):
        BPETokenizer(special_tokens=[""])
    with pytest.raises(ValueError, match="not yet defined"):
        BPETokenizer(merges=[(300, 1)])


def test_decode_accepts_tensors(tok):
    import torch

    ids = tok.encode("tensor ids")
    assert tok.decode(torch.tensor(ids)) == "tensor ids"


def test_default_pattern_is_gpt2_like():
    parts = BPETokenizer(pattern=GPT2_SPLIT_PATTERN).pretokenize("Hello, world's  __init__ 42!")
    assert parts == ["Hello", ",", " world", "'s", " ", " __init__", " 42", "!"]
