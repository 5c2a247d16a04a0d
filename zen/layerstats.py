"""Per-layer statistics of a deep network: the scale of every layer's outputs and gradients.

A deep network is healthy at initialisation when the signal keeps its scale in both
directions: the forward outputs of layer ``l`` have a variance that neither collapses nor
explodes with ``l``, and so do the gradients ``∂L/∂W_l`` on the way back::

    x ─ layer₁ ─ layer₂ ─ … ─ layer_L ─▶ loss
        Var(out₁)  Var(out₂)    Var(out_L)        (forward hooks, :func:`output_variances`)
        ‖∂L/∂W₁‖  ‖∂L/∂W₂‖      ‖∂L/∂W_L‖        (after backward, :func:`weight_grad_norms`)

A ReLU unit that outputs zero for every input is *dead*: its gradient is zero for every
input too, so nothing revives it (:func:`dead_units`).
"""

from __future__ import annotations

import torch
from torch import nn

from zen import validate

__all__ = ["layer_outputs", "output_variances", "weight_grad_norms", "dead_units"]


def _layers(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> list[nn.Module]:
    layers = [m for m in model.modules() if isinstance(m, kinds)]
    if not layers:
        names = ", ".join(k.__name__ for k in kinds)
        raise ValueError(f"model {type(model).__name__} has no layer of kind {names}")
    return layers


def layer_outputs(
    model: nn.Module, x: torch.Tensor, kinds: tuple[type[nn.Module], ...] = (nn.Linear,)
) -> list[torch.Tensor]:
    """The outputs of every module of ``kinds`` in ``model(x)``, detached, in call order."""
    validate.tensor(x, "x")
    outputs: list[torch.Tensor] = []
    hooks = [
        m.register_forward_hook(lambda _m, _inp, out: outputs.append(out.detach()))
        for m in _layers(model, kinds)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return outputs


def output_variances(
    model: nn.Module, x: torch.Tensor, kinds: tuple[type[nn.Module], ...] = (nn.Linear,)
) -> torch.Tensor:
    """``(n_layers,)``: the variance of each ``kinds`` layer's output over all its entries."""
    return torch.stack([out.float().var() for out in layer_outputs(model, x, kinds)])


def weight_grad_norms(
    model: nn.Module, kinds: tuple[type[nn.Module], ...] = (nn.Linear,)
) -> torch.Tensor:
    """``(n_layers,)``: ``‖∂L/∂W‖`` of each ``kinds`` layer, in module order, after ``backward``."""
    norms = []
    for i, layer in enumerate(_layers(model, kinds)):
        if layer.weight.grad is None:
            raise ValueError(f"layer {i} ({type(layer).__name__}) has no gradient: call backward")
        norms.append(layer.weight.grad.norm())
    return torch.stack(norms)


def dead_units(h: torch.Tensor) -> torch.Tensor:
    """``(features,)`` bool: units of ``h`` ``(n, features)`` that are zero for every row."""
    validate.ndim(h, 2, "h", "(n, features)")
    return (h == 0).all(dim=0)
