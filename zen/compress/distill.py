"""Knowledge distillation (Hinton, Vinyals & Dean, 2015): a student learns the teacher's
softened output distribution as well as the labels.

``p_T = softmax(z / T)``; the soft loss is ``T² · KL(p_T^teacher ‖ p_T^student)``. The ``T²``
keeps its gradient on the same scale as the hard loss when ``T`` changes: for large ``T``
and zero-mean logits, ``T² · KL → Σ (z_s − z_t)² / (2N)`` over the ``N`` classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zen import validate


def soft_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """``T² · KL(softmax(t/T) ‖ softmax(s/T))``, averaged over the batch.

    Logits ``(batch, classes)``.
    """
    validate.ndim(student_logits, 2, "student_logits", "(batch, classes)")
    validate.ndim(teacher_logits, 2, "teacher_logits", "(batch, classes)")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student_logits and teacher_logits must have the same shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    if student_logits.shape[0] == 0:
        raise ValueError("logits must be non-empty, got batch size 0")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()
    return kl * temperature**2


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> torch.Tensor:
    """``α · soft_loss + (1 − α) · cross_entropy(student, targets)``; ``targets`` ``(batch,)``."""
    validate.in_range(alpha, "alpha", 0.0, 1.0)
    soft = soft_loss(student_logits, teacher_logits, temperature)
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, targets)
