"""Training a language model: batches of token windows, the loss, the schedule, AdamW's groups.

A token stream becomes examples by windows (:func:`random_windows` for training batches,
:func:`lm_windows` for a fixed validation split) whose targets are the inputs shifted by one;
:func:`lm_loss` is the mean next-token cross-entropy.

The recipe of GPT-2/3, Chinchilla and nanoGPT. The learning rate warms up linearly, then
decays along half a cosine to a floor ``min_ratio · lr_max`` at ``total_steps``::

    step s:      0 ........ warmup_steps - 1 | warmup_steps .......................... total_steps
    factor:   1/w  →  linearly  →  1         | min_ratio + ½ (1 − min_ratio)(1 + cos π u)
                                               u = (s − warmup_steps) / (total_steps − warmup_steps)

Warm-up keeps the first steps small while Adam's second-moment estimates are still noisy;
the cosine tail anneals the noise of stochastic gradients away at the end.

Weight decay (AdamW's decoupled ``θ ← θ − lr · λ · θ``) applies to matrices only — linear
weights and embedding tables — never to biases or LayerNorm gains and shifts: those set
scales and offsets, are few, and pulling a gain towards zero shrinks the signal it scales.
Gradient clipping (``torch.nn.utils.clip_grad_norm_``) completes the recipe in the loop.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate
from zen.data import Split
from zen.optim import cosine_schedule


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """The learning-rate factor (multiply by the peak rate) at optimizer step ``step`` (0-based).

    :func:`zen.optim.cosine_schedule` with a peak of 1, except that the warm-up starts at
    ``1 / warmup_steps`` rather than 0: linear warm-up ``(step + 1) / warmup_steps`` over the
    first ``warmup_steps`` steps, then a half cosine from 1 down to ``min_ratio`` at
    ``total_steps``; constant ``min_ratio`` after.
    """
    validate.positive_int(warmup_steps, "warmup_steps")
    validate.positive_int(total_steps, "total_steps")
    validate.in_range(min_ratio, "min_ratio", 0.0, 1.0)
    if warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps ({warmup_steps}) must be smaller than total_steps ({total_steps})"
        )
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:  # starts at 1 / warmup_steps, not 0: step 0 already moves
        return (step + 1) / warmup_steps
    return cosine_schedule(step, 1.0, min_ratio, warmup_steps, total_steps)


def warmup_cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, min_ratio: float = 0.1
) -> torch.optim.lr_scheduler.LambdaLR:
    """:func:`warmup_cosine` as a scheduler: ``scheduler.step()`` after each optimizer step."""
    warmup_cosine(0, warmup_steps, total_steps, min_ratio)  # check the arguments once, here
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, warmup_steps, total_steps, min_ratio)
    )


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: ``weight_decay`` on matrices (``ndim >= 2``), none on the rest.

    Returns ``[{"params": matrices, "weight_decay": weight_decay}, {"params": vectors,
    "weight_decay": 0.0}]``; a tied parameter appears once.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    validate.in_range(weight_decay, "weight_decay", 0.0, math.inf)
    params = [p for p in model.parameters() if p.requires_grad]  # parameters() skips ties
    return [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]


def adamw(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.95),
) -> torch.optim.AdamW:
    """AdamW over :func:`decay_groups` with GPT-3's ``betas`` (0.9, 0.95) and decay 0.1."""
    validate.positive(lr, "lr")
    return torch.optim.AdamW(decay_groups(model, weight_decay), lr=lr, betas=betas)


# --------------------------------------------------------------------------- data and loss
def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of logits ``(batch, seq, vocab)`` and ids ``(batch, seq)``."""
    validate.ndim(logits, 3, "logits", "(batch, seq, vocab)")
    validate.ndim(targets, 2, "targets", "(batch, seq)")
    return F.cross_entropy(
        logits.flatten(0, 1), targets.flatten()
    )  # (batch·seq, vocab) vs (batch·seq,)


def random_windows(
    ids: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of language-modelling examples from a 1-D stream of token ids.

    Returns ``x`` and ``y`` of shape ``(batch_size, seq_len)`` with ``y`` = ``x`` shifted left
    by one: every position is a training example for the token after it.
    """
    validate.ndim(ids, 1, "ids", "(n_tokens,)")
    validate.positive_int(batch_size, "batch_size")
    validate.positive_int(seq_len, "seq_len")
    if len(ids) <= seq_len:
        raise ValueError(f"ids has {len(ids)} tokens; need more than seq_len={seq_len}")
    start = torch.randint(len(ids) - seq_len, (batch_size,), generator=generator)
    windows = ids[start[:, None] + torch.arange(seq_len + 1)]  # (batch, seq_len + 1)
    return windows[:, :-1], windows[:, 1:]


def lm_windows(ids: torch.Tensor, seq_len: int, max_windows: int | None = None) -> Split:
    """Consecutive, non-overlapping windows of a token stream as a :class:`zen.data.Split`.

    ``x`` and ``y`` have shape ``(n_windows, seq_len)`` and ``y`` is ``x`` shifted by one
    token, so ``zen.train.evaluate_loss(model, split, lm_loss)`` is the validation loss.
    """
    validate.ndim(ids, 1, "ids", "(n_tokens,)")
    validate.positive_int(seq_len, "seq_len")
    n = (len(ids) - 1) // seq_len
    if max_windows is not None:
        n = min(n, validate.positive_int(max_windows, "max_windows"))
    if n < 1:
        raise ValueError(f"ids has {len(ids)} tokens; need at least seq_len + 1 = {seq_len + 1}")
    x = ids[: n * seq_len].view(n, seq_len)  # (n_tokens,) -> (windows, seq_len)
    y = ids[1 : n * seq_len + 1].view(n, seq_len)
    return Split(x, y)
