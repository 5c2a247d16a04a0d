"""MLP generator ``(n, latent) -> (n, d)`` and discriminator ``(n, d) -> (n,)``, optionally
conditional.

A conditional network (``num_classes > 0``) reads the one-hot class appended to its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zen import validate
from zen.mlp import mlp


def _check_num_classes(num_classes: int) -> int:
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ValueError(f"num_classes must be a non-negative int, got {num_classes!r}")
    return num_classes


def _with_class(x: torch.Tensor, y: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """``(n, f)`` -> ``(n, f + num_classes)``: ``x`` with the one-hot class appended."""
    if num_classes == 0:
        if y is not None:
            raise ValueError("this network is unconditional (num_classes=0) but got classes y")
        return x
    if y is None:
        raise ValueError(f"this network is conditional (num_classes={num_classes}): pass y")
    validate.ndim(y, 1, "y", "(batch,) class indices")
    if y.dtype != torch.long:
        raise TypeError(f"y must hold int64 class indices, got dtype {y.dtype}")
    validate.same_size(x, y, 0, "x", "y")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"y must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    return torch.cat([x, F.one_hot(y, num_classes).to(x.dtype)], dim=1)


class MLPGenerator(nn.Module):
    """``G: (n, latent_dim) -> (n, out_dim)``: an MLP with ReLU hidden layers.

    ``output="linear"`` for unbounded data (toy 1-D/2-D), ``"sigmoid"`` for pixels in ``[0, 1]``.
    With ``num_classes > 0`` it is *conditional* (Mirza & Osindero, 2014): ``G(z, y)`` reads the
    one-hot class ``y`` ``(n,)`` concatenated to ``z``, ``(n, latent_dim + num_classes)``.
    """

    def __init__(
        self,
        latent_dim: int,
        out_dim: int,
        hidden: int = 128,
        depth: int = 2,
        output: str = "linear",
        num_classes: int = 0,
    ):
        super().__init__()
        for value, name in (
            (latent_dim, "latent_dim"),
            (out_dim, "out_dim"),
            (hidden, "hidden"),
            (depth, "depth"),
        ):
            validate.positive_int(value, name)
        if output not in ("linear", "sigmoid"):
            raise ValueError(f"output must be 'linear' or 'sigmoid', got {output!r}")
        self.latent_dim, self.out_dim, self.output = latent_dim, out_dim, output
        self.num_classes = _check_num_classes(num_classes)
        self.net = mlp([latent_dim + num_classes] + [hidden] * depth + [out_dim], nn.ReLU)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        validate.ndim(z, 2, "z", "(batch, latent_dim)")
        if z.shape[1] != self.latent_dim:
            raise ValueError(f"z must have {self.latent_dim} features, got shape {tuple(z.shape)}")
        x = self.net(_with_class(z, y, self.num_classes))
        return torch.sigmoid(x) if self.output == "sigmoid" else x

    def sample(
        self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``n`` samples ``(n, out_dim)`` from ``z ~ N(0, I)`` (noise drawn on CPU from
        ``generator``).

        A conditional generator needs the classes ``y`` ``(n,)`` of the samples.
        """
        validate.positive_int(n, "n")
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        return self(z, None if y is None else y.to(device))


class MLPDiscriminator(nn.Module):
    """``D: (n, in_dim) -> (n,)`` logits (or WGAN critic scores): an MLP with LeakyReLU(0.2).

    No normalisation layers, so the critic's input gradient is per-sample, as WGAN-GP requires.
    With ``num_classes > 0``, ``D(x, y)`` also reads the one-hot class: it judges whether ``x``
    is a real example *of class* ``y``.
    """

    def __init__(self, in_dim: int, hidden: int = 128, depth: int = 2, num_classes: int = 0):
        super().__init__()
        for value, name in ((in_dim, "in_dim"), (hidden, "hidden"), (depth, "depth")):
            validate.positive_int(value, name)
        self.in_dim = in_dim
        self.num_classes = _check_num_classes(num_classes)
        self.net = mlp([in_dim + num_classes] + [hidden] * depth + [1], lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        validate.ndim(x, 2, "x", "(batch, in_dim)")
        if x.shape[1] != self.in_dim:
            raise ValueError(f"x must have {self.in_dim} features, got shape {tuple(x.shape)}")
        return self.net(_with_class(x, y, self.num_classes)).squeeze(1)  # (n, 1) -> (n,)
