"""Initialisation from the variance argument: keep every layer's pre-activations at unit scale.

A linear layer ``y = W h`` with independent zero-mean weights of variance ``σ²`` sums
``fan_in`` products, so, for ``h = φ(x)`` with ``x ~ N(0, q)``::

    Var(y) = fan_in · σ² · E[φ(x)²]

Choosing ``σ² = gain² / fan_in`` with ``gain² = 1 / E[φ(x)²]`` (at ``q = 1``) keeps ``Var(y) = 1``
through any number of layers: the *gain* of ``φ``.

    linear      gain = 1                       (Glorot & Bengio 2010, forward half)
    relu        gain = √2                      E[relu(x)²] = 1/2          (He et al. 2015)
    leaky_relu  gain = √(2 / (1 + a²))         E[leaky(x)²] = (1 + a²)/2
    smooth φ    gain = 1 / √E[φ(x)²]           by Gauss–Hermite quadrature (tanh ≈ 1.59)

Xavier's ``σ² = gain² · 2 / (fan_in + fan_out)`` averages the forward condition (``fan_in``)
with the backward one (``fan_out``); Kaiming's ``σ² = gain² / fan_in`` keeps the forward one.
For a weight of shape ``(out, in, *kernel)`` (``nn.Linear``, ``nn.Conv2d``), ``fan_in`` is
``in · prod(kernel)`` and ``fan_out`` is ``out · prod(kernel)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from zen import activations, validate

__all__ = ["fans", "variance_gain", "gain", "kaiming_normal_", "xavier_normal_", "init_linear_"]

_PIECEWISE_LINEAR = ("linear", "relu", "leaky_relu")
#: the classic activations that the course's blocks do not offer (zen.activations has the rest)
_CLASSIC: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "elu": F.elu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape ``(out, in, *kernel)``."""
    validate.ndim_at_least(weight, 2, "weight", "(out_features, in_features, *kernel)")
    receptive = math.prod(weight.shape[2:])  # 1 for a linear layer
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def variance_gain(fn: Callable[[torch.Tensor], torch.Tensor], points: int = 201) -> float:
    """``1 / √E[fn(x)²]`` for ``x ~ N(0, 1)``, by Gauss–Hermite quadrature in float64.

    Exact to about 1e-6 for smooth ``fn``; for a kink (ReLU) the error is about 1e-4.
    """
    validate.positive_int(points, "points")
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)  # weight exp(-x²/2)
    x = torch.from_numpy(nodes)
    w = torch.from_numpy(weights) / math.sqrt(2 * math.pi)  # now the N(0, 1) expectation
    second_moment = float((w * fn(x) ** 2).sum())
    if not second_moment > 0:
        raise ValueError(f"fn must not vanish on N(0, 1); got E[fn(x)²] = {second_moment}")
    return 1.0 / math.sqrt(second_moment)


def gain(nonlinearity: str, negative_slope: float = 0.01) -> float:
    """The variance-preserving gain of ``nonlinearity``.

    ``"linear"``, ``"relu"`` and ``"leaky_relu"`` (with ``negative_slope``) in closed form;
    ``"elu"``, ``"tanh"``, ``"sigmoid"`` and any other name of
    :data:`zen.activations.ACTIVATIONS` by :func:`variance_gain`.
    """
    smooth = {**activations.ACTIVATIONS, **_CLASSIC}
    choices = [*_PIECEWISE_LINEAR, *sorted(set(smooth) - set(_PIECEWISE_LINEAR))]
    validate.one_of(nonlinearity, choices, "nonlinearity")
    if nonlinearity == "linear":
        return 1.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        return math.sqrt(2.0 / (1.0 + negative_slope**2))
    return variance_gain(smooth[nonlinearity])


def kaiming_normal_(
    weight: torch.Tensor,
    nonlinearity: str = "relu",
    negative_slope: float = 0.01,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill ``weight`` ``(out, in, *kernel)`` in place from ``N(0, gain² / fan_in)``; return it."""
    validate.floating(weight, "weight")
    fan_in, _ = fans(weight)
    std = gain(nonlinearity, negative_slope) / math.sqrt(fan_in)
    with torch.no_grad():
        return weight.normal_(0.0, std, generator=generator)


def xavier_normal_(
    weight: torch.Tensor, gain: float = 1.0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Fill ``weight`` in place from ``N(0, gain² · 2 / (fan_in + fan_out))``; return it."""
    validate.floating(weight, "weight")
    validate.positive(gain, "gain")
    fan_in, fan_out = fans(weight)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    with torch.no_grad():
        return weight.normal_(0.0, std, generator=generator)


def init_linear_(
    model: nn.Module,
    scheme: str,
    gain: float = 1.0,
    std: float | None = None,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Initialise every ``nn.Linear`` of ``model`` in place (biases to zero); return ``model``.

    ``scheme``: ``"kaiming"`` (``N(0, gain² / fan_in)``), ``"xavier"`` (``N(0, gain² · 2 /
    (fan_in + fan_out))``) or ``"normal"`` (one fixed ``std`` for every layer: the naive way).
    """
    validate.one_of(scheme, ("kaiming", "xavier", "normal"), "scheme")
    validate.positive(gain, "gain")
    if (scheme == "normal") != (std is not None):
        raise ValueError(f"std is needed by scheme 'normal' and only by it; got std={std!r}")
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"model has no nn.Linear layer to initialise: {type(model).__name__}")
    for layer in layers:
        fan_in, fan_out = fans(layer.weight)
        if scheme == "kaiming":
            layer_std = gain / math.sqrt(fan_in)
        elif scheme == "xavier":
            layer_std = gain * math.sqrt(2.0 / (fan_in + fan_out))
        else:
            layer_std = validate.positive(std, "std")
        with torch.no_grad():
            layer.weight.normal_(0.0, layer_std, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()
    return model
