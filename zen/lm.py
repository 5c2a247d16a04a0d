"""Training a language model: the learning-rate schedule and AdamW's two parameter groups.

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
from torch import nn

from zen import validate


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """The learning-rate factor (multiply by the peak rate) at optimizer step ``step`` (0-based).

    Linear warm-up ``(step + 1) / warmup_steps`` over the first ``warmup_steps`` steps, then a
    half cosine from 1 down to ``min_ratio`` at ``total_steps``; constant ``min_ratio`` after.
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
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    u = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))  # 0 → 1 along the decay
    return min_ratio + 0.5 * (1.0 - min_ratio) * (1.0 + math.cos(math.pi * u))


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
