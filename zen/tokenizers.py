"""Byte-level byte-pair encoding (BPE), the tokenizer of GPT-2 and most large language models.

Text is first turned into UTF-8 **bytes**, so the base alphabet is the 256 byte values and any
string — emoji, Chinese, characters never seen in training — can be encoded: nothing is ever
"unknown". Training then repeats one step: find the most frequent adjacent pair of tokens in the
corpus and give it a new id (a *merge*), until the vocabulary has the requested size
{cite}`sennrich2016bpe`. Encoding replays the merges, in the order they were learnt.

As in GPT-2 {cite}`radford2019gpt2`, the text is first split into *pre-tokens* (words with their
leading space, runs of digits, runs of punctuation, runs of whitespace) by a regular expression,
and merges never cross a pre-token boundary. This keeps ``" the"`` and ``"the."`` from growing
into one token per punctuation variant, and it makes training fast: the corpus becomes a table
of distinct pre-tokens with their counts.

:func:`train_bpe` keeps the pair counts up to date *incrementally*: a merge only changes the
counts of pairs in the words that contain the merged pair, so only those words are touched
(the naive method re-counts the whole corpus after every merge). Special tokens such as
``[CLS]``, ``[SEP]``, ``[MASK]``, ``[PAD]`` or ``<|endoftext|>`` get ids after the merges and are
never split.

Example::

    tok = train_bpe(zen.data.pydoc_corpus(100_000), vocab_size=512,
                    special_tokens=["<|endoftext|>"])
    ids = tok.encode("def f(x): return x ** 2  # 🙂")
    assert tok.decode(ids) == "def f(x): return x ** 2  # 🙂"
"""

from __future__ import annotations

import heapq
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

N_BYTES = 256

#: GPT-2's pre-tokenizer written for Python's ``re`` (which has no ``\p{L}``): English
#: contractions, words with an optional leading space (letters and ``_``, so ``__init__`` stays
#: one word), digit runs, punctuation runs, and whitespace (a run not followed by a non-space
#: keeps its last space for the next word). Every character matches some branch, so the pieces
#: always join back to the input.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+"""


def _to_bytes(text: str) -> bytes:
    # "surrogatepass" lets even lone surrogates (legal in a Python str) round-trip exactly.
    return text.encode("utf-8", errors="surrogatepass")


def _from_bytes(data: bytes) -> str:
    try:
        return data.decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError:  # ids that cut a character in half: show U+FFFD, as GPT-2 does
        return data.decode("utf-8", errors="replace")


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each non-overlapping ``pair`` in ``ids`` (left to right) by ``new_id``."""
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i < n - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """A trained byte-level BPE tokenizer.

    Ids ``0..255`` are the bytes, ``256..256+len(merges)-1`` the merges in the order they were
    learnt, then the special tokens.

    Attributes:
        merges: the learnt merges, in order; ``merges[i] = (a, b)`` created id ``256 + i``.
        vocab: ``id -> bytes`` for every non-special id (a merged token's bytes are the
            concatenation of its two parts).
        special_tokens: ``string -> id`` for the special tokens.
        pattern: the pre-tokenizer regular expression (``None``: no pre-splitting).
    """

    def __init__(
        self,
        merges: Sequence[tuple[int, int]] = (),
        special_tokens: Sequence[str] = (),
        pattern: str | None = GPT2_SPLIT_PATTERN,
    ) -> None:
        self.merges: list[tuple[int, int]] = []
        self.vocab: dict[int, bytes] = {i: bytes([i]) for i in range(N_BYTES)}
        for i, pair in enumerate(merges):
            a, b = (int(x) for x in pair)
            new_id = N_BYTES + i
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(
                    f"merge {i} {pair!r} refers to an id not yet defined (must be < {new_id})"
                )
            self.merges.append((a, b))
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        self.ranks: dict[tuple[int, int], int] = {p: i for i, p in enumerate(self.merges)}
        self.pattern = pattern
        self._split = re.compile(pattern) if pattern is not None else None
        self.special_tokens: dict[str, int] = {}
        self._special_re: re.Pattern | None = None
        self._cache: dict[str, list[int]] = {}
        self.add_special_tokens(special_tokens)

    # ---------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes + merges + special tokens."""
        return N_BYTES + len(self.merges) + len(self.special_tokens)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
            f"special_tokens={list(self.special_tokens)})"
        )

    def add_special_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Add special tokens (ids after every existing id); return their ids.

        A token already present keeps its id. Special tokens are matched in the text before
        pre-tokenization and are never split by merges.
        """
        ids = []
        for tok in tokens:
            if not isinstance(tok, str) or not tok:
                raise ValueError(f"special tokens must be non-empty strings, got {tok!r}")
            if tok not in self.special_tokens:
                self.special_tokens[tok] = self.vocab_size
            ids.append(self.special_tokens[tok])
        if self.special_tokens:
            # longest first, so "<|a|>b" can never shadow a longer token sharing a prefix
            alts = sorted(self.special_tokens, key=len, reverse=True)
            self._special_re = re.compile("(" + "|".join(re.escape(t) for t in alts) + ")")
        return ids

    def token_to_id(self, token: str) -> int:
        """The id of a special token, or of a string that is a single token of the vocabulary."""
        if token in self.special_tokens:
            return self.special_tokens[token]
        ids = self.encode(token, allow_special=False)
        if len(ids) != 1:
            raise KeyError(f"{token!r} is not a single token: it encodes to {ids}")
        return ids[0]

    def id_to_bytes(self, idx: int) -> bytes:
        """The bytes of one id (a special token gives its UTF-8 string)."""
        self._check_ids([idx])
        if idx in self.vocab:
            return self.vocab[idx]
        return _to_bytes(self._special_by_id()[idx])

    def _special_by_id(self) -> dict[int, str]:
        return {i: t for t, i in self.special_tokens.items()}

    # ---------------------------------------------------------------- encoding
    def pretokenize(self, text: str) -> list[str]:
        """Split ``text`` into pre-tokens; ``"".join(result) == text`` always."""
        if self._split is None:
            return [text] if text else []
        return self._split.findall(text)

    def _encode_chunk(self, chunk: str) -> list[int]:
        """BPE one pre-token: start from its bytes, apply the lowest-rank merge present, repeat."""
        cached = self._cache.get(chunk)
        if cached is not None:
            return cached
        ids = list(_to_bytes(chunk))
        while len(ids) >= 2:
            # the merge learnt earliest among the adjacent pairs (inf: not a merge)
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, float("inf")))
            rank = self.ranks.get(pair)
            if rank is None:
                break
            ids = merge_pair(ids, pair, N_BYTES + rank)
        if len(self._cache) < 100_000:
            self._cache[chunk] = ids
        return ids

    def encode(self, text: str, allow_special: bool = True) -> list[int]:
        """Encode a string to token ids.

        Args:
            text: any Python string (unseen characters fall back to their bytes).
            allow_special: if ``True`` a special token written in ``text`` (e.g. ``"[SEP]"``)
                becomes its id; if ``False`` it is encoded as ordinary text.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if allow_special and self._special_re is not None:
            parts = self._special_re.split(text)  # odd positions are the special tokens
        else:
            parts = [text]
        ids: list[int] = []
        for k, part in enumerate(parts):
            if k % 2 == 1:
                ids.append(self.special_tokens[part])
                continue
            for chunk in self.pretokenize(part):
                ids.extend(self._encode_chunk(chunk))
        return ids

    def encode_batch(self, texts: Sequence[str], allow_special: bool = True) -> list[list[int]]:
        """Encode several strings."""
        return [self.encode(t, allow_special) for t in texts]

    # ---------------------------------------------------------------- decoding
    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        out = []
        n = self.vocab_size
        for i in ids:
            if hasattr(i, "item"):  # a 0-d tensor / numpy scalar
                i = i.item()
            if isinstance(i, bool) or not isinstance(i, int):
                raise TypeError(f"token ids must be integers, got {i!r} ({type(i).__name__})")
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is out of range: this tokenizer has ids 0..{n - 1}")
            out.append(i)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Decode ids to a string. Raises ``ValueError`` for an id outside ``0..vocab_size-1``.

        A sequence that cuts a multi-byte character in half decodes that piece to U+FFFD.
        """
        if hasattr(ids, "tolist"):  # a tensor or array
            ids = ids.tolist()
        ids = self._check_ids(ids)
        specials = self._special_by_id()
        out: list[str] = []
        buf = bytearray()
        for i in ids:
            if i in specials:
                out.append(_from_bytes(bytes(buf)))
                buf.clear()
                out.append(specials[i])
            else:
                buf += self.vocab[i]
        out.append(_from_bytes(bytes(buf)))
        return "".join(out)

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        return {
            "format": "zen-bpe-1",
            "pattern": self.pattern,
            "merges": [list(p) for p in self.merges],
            "special_tokens": sorted(self.special_tokens, key=self.special_tokens.get),
        }

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to a JSON file."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save`."""
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        if state.get("format") != "zen-bpe-1":
            raise ValueError(
                f"{path} is not a zen BPE tokenizer file (format {state.get('format')!r})"
            )
        return cls([tuple(p) for p in state["merges"]], state["special_tokens"], state["pattern"])


def train_bpe(
    text: str | Sequence[str],
    vocab_size: int,
    special_tokens: Sequence[str] = (),
    pattern: str | None = GPT2_SPLIT_PATTERN,
    min_frequency: int = 2,
) -> BPETokenizer:
    """Learn byte-level BPE merges from ``text``.

    Args:
        text: the training corpus (a string or a list of documents).
        vocab_size: total number of ids wanted: 256 bytes + merges + ``len(special_tokens)``.
            Must be at least ``256 + len(special_tokens)``.
        special_tokens: strings such as ``"[CLS]"`` given the last ids; they are removed from
            the corpus before counting, so no merge spans them.
        pattern: pre-tokenizer regular expression (``None`` merges across the whole text).
        min_frequency: stop early when the most frequent pair occurs fewer times than this.

    Returns:
        A :class:`BPETokenizer` (possibly with fewer merges than asked if the corpus runs out of
        pairs occurring ``min_frequency`` times).

    Each merge costs time proportional to the number of distinct words containing the merged
    pair, not to the corpus size: pair counts and a pair → words index are updated in place, and
    a max-heap with lazy deletion finds the most frequent pair (ties go to the smaller pair).
    """
    if isinstance(text, str):
        docs = [text]
    elif isinstance(text, Sequence) and all(isinstance(t, str) for t in text):
        docs = list(text)
    else:
        raise TypeError(f"text must be a str or a sequence of str, got {type(text).__name__}")
    if not any(docs):
        raise ValueError("cannot train BPE on an empty corpus: text has no characters")
    special_tokens = list(dict.fromkeys(special_tokens))
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
    floor = N_BYTES + len(special_tokens)
    if vocab_size < floor:
        raise ValueError(
            f"vocab_size must be at least {floor} (the 256-byte alphabet + {len(special_tokens)} "
            f"special tokens), got {vocab_size}"
        )
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise ValueError(f"min_frequency must be a positive integer, got {min_frequency!r}")
    tok = BPETokenizer(special_tokens=special_tokens, pattern=pattern)  # validates the tokens

    # 1. the corpus as a table of distinct pre-tokens (as byte-id lists) and their counts
    counts: Counter[str] = Counter()
    for doc in docs:
        parts = tok._special_re.split(doc) if tok._special_re is not None else [doc]
        for part in parts[::2]:  # drop the special tokens themselves
            counts.update(tok.pretokenize(part))
    words: list[list[int]] = [list(_to_bytes(w)) for w in counts]
    freqs: list[int] = list(counts.values())

    # 2. pair counts and, for each pair, the words it occurs in
    pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
    where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
    for w, (ids, f) in enumerate(zip(words, freqs)):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += f
            where[pair].add(w)
    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    n_merges = vocab_size - floor
    while len(merges) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if pair_counts.get(pair, 0) != -neg:  # stale entry: the count has changed since
            continue
        if -neg < min_frequency:
            break
        new_id = N_BYTES + len(merges)
        merges.append(pair)
        # 3. rewrite only the words that contain the pair, updating the counts they touch
        changed: set[tuple[int, int]] = set()
        for w in where.pop(pair):
            ids, f = words[w], freqs[w]
            for p in zip(ids, ids[1:]):
                pair_counts[p] -= f
                changed.add(p)
            ids = merge_pair(ids, pair, new_id)
            words[w] = ids
            for p in zip(ids, ids[1:]):
                pair_counts[p] += f
                where[p].add(w)
                changed.add(p)
        for p in changed:
            c = pair_counts[p]
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                del pair_counts[p]
                where.pop(p, None)
    return BPETokenizer(merges, special_tokens, pattern)


def compression_ratio(tokenizer: BPETokenizer, text: str) -> float:
    """UTF-8 bytes per token of ``text`` (1.0 for bytes alone; higher compresses more)."""
    if not text:
        raise ValueError("compression_ratio needs a non-empty text")
    return len(_to_bytes(text)) / len(tokenizer.encode(text))
