"""BERT's inputs: ``[CLS] a [SEP] b [SEP]`` batches and the masked-LM corruption.

Masked language modelling hides 15 % of the ordinary tokens and asks the model for them::

    chosen ~ Bernoulli(mask_prob) on ordinary tokens (never [PAD], [CLS], [SEP], [MASK])
    chosen token → [MASK] (80 %) | a random ordinary token (10 %) | itself (10 %)
    labels = original id where chosen, IGNORE_INDEX (-100) elsewhere

    input_ids (B, L) → inputs (B, L), labels (B, L)

:func:`encode_batch` builds ``input_ids``, ``token_type_ids`` (segment 0 / 1) and
``attention_mask`` (1 = real token), each ``(B, L)``, padded to the longest row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from zen import validate

__all__ = ["SPECIAL_TOKENS", "IGNORE_INDEX", "mask_tokens", "encode_batch"]

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")
IGNORE_INDEX = -100  # label of a position the loss ignores (PyTorch's cross_entropy default)


# ------------------------------------------------------------------------------------ masking
def mask_tokens(
    input_ids: torch.Tensor,
    mask_token_id: int,
    special_ids: Iterable[int],
    vocab_size: int,
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt ``input_ids (B, L)`` for masked language modelling (BERT's 80/10/10 rule).

    Each ordinary token (an id not in ``special_ids``; padding must be one of them) is chosen
    with probability ``mask_prob``. A chosen token is replaced by ``mask_token_id`` with
    probability 0.8, by a uniformly random *ordinary* token with probability 0.1, and kept
    with probability 0.1.

    Args:
        input_ids: integer ids ``(B, L)`` (any shape works).
        mask_token_id: the id of ``[MASK]``.
        special_ids: ids that are never chosen nor drawn as random replacements
            (``[PAD]``, ``[CLS]``, ``[SEP]``, ``[MASK]`` …).
        vocab_size: number of ids; random replacements are drawn from ``range(vocab_size)``
            minus ``special_ids``.
        mask_prob: share of ordinary tokens to predict, in ``(0, 1]``.
        generator: a ``torch.Generator`` on the CPU for reproducible masks.

    Returns:
        ``(inputs, labels)``, both like ``input_ids``: ``labels`` holds the original id at the
        chosen positions and ``IGNORE_INDEX`` (-100) everywhere else.
    """
    validate.positive_int(vocab_size, "vocab_size")
    validate.token_ids(
        input_ids, vocab_size, "input_ids", dims=None, values=True
    )  # read once; it moves to the CPU anyway
    if not 0.0 < mask_prob <= 1.0:
        raise ValueError(f"mask_prob must be in (0, 1], got {mask_prob!r}")
    special = torch.tensor(sorted(set(int(i) for i in special_ids)), dtype=torch.long)
    if mask_token_id not in special.tolist():
        raise ValueError(
            f"mask_token_id {mask_token_id} must be one of the special_ids {special.tolist()}"
        )
    ordinary_ids = torch.ones(vocab_size, dtype=torch.bool)
    ordinary_ids[special[special < vocab_size]] = False
    ordinary_ids = ordinary_ids.nonzero().squeeze(1)  # (n_ordinary,)
    if len(ordinary_ids) == 0:
        raise ValueError("every id is special: there is nothing to mask")

    ids = input_ids.cpu().long()
    u = torch.rand(ids.shape, generator=generator)  # one draw decides chosen / which replacement
    can_mask = ~torch.isin(ids, special)
    chosen = can_mask & (torch.rand(ids.shape, generator=generator) < mask_prob)
    to_mask = chosen & (u < 0.8)
    to_random = chosen & (u >= 0.8) & (u < 0.9)  # the remaining 10 % stay unchanged
    random_ids = ordinary_ids[torch.randint(len(ordinary_ids), ids.shape, generator=generator)]

    inputs = ids.clone()
    inputs[to_mask] = mask_token_id
    inputs[to_random] = random_ids[to_random]
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs.to(input_ids.device, input_ids.dtype), labels.to(input_ids.device)


def encode_batch(
    tokenizer,
    texts: Sequence[str],
    pairs: Sequence[str] | None = None,
    max_len: int = 128,
) -> dict[str, torch.Tensor]:
    """Tokenise sentences (or sentence pairs) into BERT's input layout, padded to the longest.

    ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``; long inputs are truncated (the longer
    segment first) so that the whole fits ``max_len``.

    Args:
        tokenizer: any object with ``encode(str) -> list[int]`` and ``token_to_id(str)`` knowing
            ``[PAD]``, ``[CLS]``, ``[SEP]`` (e.g. :class:`zen.tokenizers.BPETokenizer`).
        texts: the first segments; pairs: the second segments (same length) or ``None``.

    Returns:
        ``input_ids``, ``token_type_ids``, ``attention_mask``: int64 tensors ``(B, L)``.
    """
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError("texts must be a non-empty sequence of strings")
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(
            f"pairs must have one entry per text: got {len(pairs)} pairs for {len(texts)} texts"
        )
    budget = max_len - (3 if pairs is not None else 2)
    if budget < 1:
        raise ValueError(f"max_len={max_len} leaves no room for tokens after [CLS]/[SEP]")
    cls, sep, pad = (tokenizer.token_to_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    rows: list[tuple[list[int], list[int]]] = []
    for i, text in enumerate(texts):
        a = tokenizer.encode(text, allow_special=False)
        b = tokenizer.encode(pairs[i], allow_special=False) if pairs is not None else []
        while len(a) + len(b) > budget:  # trim the longer segment, one token at a time
            if len(a) >= len(b):
                a.pop()
            else:
                b.pop()
        ids = [cls, *a, sep] + ([*b, sep] if pairs is not None else [])
        types = [0] * (len(a) + 2) + [1] * (len(ids) - len(a) - 2)
        rows.append((ids, types))
    L = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), L), pad, dtype=torch.long)
    token_type_ids = torch.zeros(len(rows), L, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), L, dtype=torch.long)
    for r, (ids, types) in enumerate(rows):
        input_ids[r, : len(ids)] = torch.tensor(ids)
        token_type_ids[r, : len(ids)] = torch.tensor(types)
        attention_mask[r, : len(ids)] = 1
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
    }
