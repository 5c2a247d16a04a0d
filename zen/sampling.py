"""Turning a language model's logits into the next token: greedy, temperature, top-k, top-p.

A language model outputs, for every position, logits ``(batch, vocab)`` over the next token.
Decoding strategies differ only in how they turn those logits into a choice:

* **greedy** (``temperature=0``): always the most likely token — deterministic, repetitive;
* **temperature** ``τ``: sample from ``softmax(logits / τ)``; ``τ < 1`` sharpens the
  distribution towards greedy, ``τ > 1`` flattens it towards uniform;
* **top-k**: keep only the ``k`` most likely tokens, renormalise, sample;
* **top-p** (nucleus sampling, {cite}`holtzman2020curious`): keep the smallest set of most
  likely tokens whose probabilities sum to at least ``p``, renormalise, sample. Unlike top-k the
  number of candidates adapts: few when the model is sure, many when it is not.

Temperature is applied first, then top-k, then top-p (the order Hugging Face uses).
"""

from __future__ import annotations

import torch

from zen import validate


def _check(
    logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    validate.ndim(logits, 2, "logits", "(batch, vocab)")
    validate.floating(logits, "logits")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or temperature < 0
    ):
        raise ValueError(f"temperature must be a number >= 0 (0 means greedy), got {temperature!r}")
    if top_k is not None:
        validate.positive_int(top_k, "top_k")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")


def filter_logits(
    logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Set to ``-inf`` the logits outside the top-k and outside the nucleus of mass ``top_p``.

    ``logits`` ``(batch, vocab)`` → the same shape. At least one token always survives.
    """
    _check(logits, 1.0, top_k, top_p)
    out = logits.clone()
    if top_k is not None and top_k < out.size(-1):
        kth = torch.topk(out, top_k, dim=-1).values[:, -1:]  # (batch, 1): the k-th largest logit
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(out, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # mass of the tokens strictly before each one; a token is kept while that is < p,
        # so the kept set is the smallest whose mass reaches p (the first token always stays)
        before = probs.cumsum(dim=-1) - probs
        drop_sorted = before >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        out = out.masked_fill(drop, float("-inf"))
    return out


def next_token_probs(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> torch.Tensor:
    """The distribution a decoding strategy samples from: ``(batch, vocab)`` → ``(batch, vocab)``.

    ``temperature=0`` gives a one-hot distribution on the argmax (greedy decoding).
    """
    _check(logits, temperature, top_k, top_p)
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).to(logits.dtype)
    return filter_logits(logits / temperature, top_k, top_p).softmax(dim=-1)


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token for each row of ``logits`` ``(batch, vocab)``: ids ``(batch, 1)``."""
    _check(logits, temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    probs = next_token_probs(logits.float(), temperature, top_k, top_p)
    return torch.multinomial(probs, 1, generator=generator)
