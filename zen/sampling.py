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
:func:`generate` is the decoding loop every causal language model of the course shares.
"""

from __future__ import annotations

from typing import Protocol

import torch

from zen import validate
from zen.attention import KVCache


class CausalLM(Protocol):
    """What :func:`generate` needs: ``model(idx (B, L), cache=...) → logits (B, L, V)``."""

    training: bool

    def __call__(self, idx: torch.Tensor, cache: list[KVCache] | None = None) -> torch.Tensor: ...

    def new_cache(self) -> list[KVCache]: ...

    def eval(self) -> CausalLM: ...

    def train(self, mode: bool = True) -> CausalLM: ...


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


@torch.no_grad()
def generate(
    model: CausalLM,
    idx: torch.Tensor,
    max_new_tokens: int,
    max_len: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ``idx`` ``(batch, seq)`` by ``max_new_tokens`` tokens → ``(batch, seq + new)``.

    With ``use_cache`` each step feeds only the tokens the model's caches (``model.new_cache()``)
    have not seen; the result is the same as recomputing the whole prefix every step, only
    faster. Once the sequence is longer than ``max_len`` the context is cropped to the last
    ``max_len`` tokens, which shifts every position, so from then on both paths recompute.
    The model is put in eval mode for the loop and restored after.
    """
    validate.positive_int(max_new_tokens, "max_new_tokens")
    validate.positive_int(max_len, "max_len")
    _check(torch.zeros(1, 1), temperature, top_k, top_p)
    was_training = model.training
    model.eval()
    cache = model.new_cache() if use_cache else None
    for _ in range(max_new_tokens):
        if cache is not None and idx.size(1) <= max_len:
            logits = model(idx[:, len(cache[0]) :], cache=cache)[:, -1]  # only unseen tokens
        else:
            cache = None
            logits = model(idx[:, -max_len:])[:, -1]  # (batch, vocab)
        nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (batch, 1)
        idx = torch.cat([idx, nxt.to(idx.dtype)], dim=1)
    model.train(was_training)
    return idx
