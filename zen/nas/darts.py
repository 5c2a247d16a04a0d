"""DARTS: a continuous relaxation of the choice of one operation (Liu et al., 2019).

An edge that could be any of the operations ``o_1 … o_K`` computes their mixture::

    mixed(x) = Σ_i softmax(α)_i · o_i(x)          α ∈ R^K, the architecture weights

so the choice becomes differentiable. The network weights ``w`` (inside the ``o_i``) and ``α``
are trained in turn — ``w`` on a training batch, ``α`` on a validation batch — and the
first-order approximation ignores how ``w`` would respond to a change of ``α``::

    w ← w − η_w ∇_w L_train(w, α)          α ← α − η_α ∇_α L_val(w, α)

After the search each edge keeps ``argmax_i α_i`` (discretisation). Parameter-free operations
(skip, pooling) fit at once while convolutions still learn, and a long search can drift to
them (collapse; Zela et al., 2020; Chu et al., 2020): ``alpha_penalty`` adds a regulariser on
``softmax(α)`` to the validation loss.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from zen import validate

__all__ = ["candidate_ops", "MixedOp", "arch_parameters", "weight_parameters", "first_order_step"]


def candidate_ops(channels: int) -> dict[str, nn.Module]:
    """The usual candidates on ``(batch, channels, h, w)`` maps, shape-preserving:
    ``skip``, ``conv1``, ``conv3``, ``conv5`` (no bias) and ``pool`` (3×3 average)."""
    validate.positive_int(channels, "channels")
    ops: dict[str, nn.Module] = {"skip": nn.Identity()}
    for k in (1, 3, 5):
        ops[f"conv{k}"] = nn.Conv2d(channels, channels, k, padding=k // 2, bias=False)
    ops["pool"] = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    return ops


class MixedOp(nn.Module):
    """``Σ_i softmax(α)_i · op_i(x)`` over named, shape-preserving operations; ``α`` starts at 0."""

    def __init__(self, ops: Mapping[str, nn.Module]) -> None:
        super().__init__()
        if not isinstance(ops, Mapping) or len(ops) == 0:
            raise ValueError(f"ops must be a non-empty mapping name -> module, got {ops!r}")
        self.names = tuple(ops)
        self.ops = nn.ModuleList(ops.values())
        self.alpha = nn.Parameter(torch.zeros(len(ops)))

    def weights(self) -> torch.Tensor:
        """``softmax(α)``, shape ``(n_ops,)``."""
        return torch.softmax(self.alpha, dim=0)

    def chosen(self) -> str:
        """Name of the operation kept after discretisation (``argmax α``)."""
        return self.names[int(self.alpha.argmax())]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [op(x) for op in self.ops]
        for name, out in zip(self.names, outs):
            if out.shape != x.shape:
                raise ValueError(f"op {name!r} must preserve the input shape {tuple(x.shape)}, "
                                 f"got {tuple(out.shape)}")  # fmt: skip
        stacked = torch.stack(outs)  # (n_ops, *x.shape)
        w = self.weights().view(-1, *([1] * x.ndim))  # (n_ops, 1, …)
        return (w * stacked).sum(dim=0)


def arch_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The ``α`` of every :class:`MixedOp` in ``model``."""
    return [m.alpha for m in model.modules() if isinstance(m, MixedOp)]


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter of ``model`` except the architecture weights."""
    arch = {id(p) for p in arch_parameters(model)}
    return [p for p in model.parameters() if id(p) not in arch]


def first_order_step(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    weight_opt: torch.optim.Optimizer,
    alpha_opt: torch.optim.Optimizer,
    alpha_penalty: Callable[[nn.Module], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """One alternating first-order DARTS step; returns ``(train loss, validation loss)``.

    ``weight_opt`` must hold only :func:`weight_parameters`, ``alpha_opt`` only
    :func:`arch_parameters`: each step then moves only its own set.
    """
    if not arch_parameters(model):
        raise ValueError("model has no MixedOp: there are no architecture weights to search")
    weight_opt.zero_grad(set_to_none=True)
    train_loss = loss_fn(model(train[0]), train[1])
    train_loss.backward()
    weight_opt.step()  # w ← w − η_w ∇_w L_train
    alpha_opt.zero_grad(set_to_none=True)
    weight_opt.zero_grad(set_to_none=True)
    val_loss = loss_fn(model(val[0]), val[1])
    objective = val_loss + (alpha_penalty(model) if alpha_penalty is not None else 0.0)
    objective.backward()
    alpha_opt.step()  # α ← α − η_α ∇_α (L_val + penalty)
    return train_loss.item(), val_loss.item()
