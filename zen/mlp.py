"""The multi-layer perceptron: linear maps with a non-linearity between them.

    x (n, sizes[0]) ─ Linear ─ act ─ Linear ─ act ─ … ─ Linear ─▶ (n, sizes[-1])

No activation follows the last layer: the caller decides what the output means (logits, a
mean, a pixel through a sigmoid). :class:`DeepMLP` is the deep variant of the architecture
knobs chapter: blocks of one width, plain or residual, with or without normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from zen import validate
from zen.activations import Activation


def mlp(sizes: Sequence[int], activation: Callable[[], nn.Module] = nn.ReLU) -> nn.Sequential:
    """``nn.Sequential`` of ``len(sizes) - 1`` linear layers with ``activation()`` between them."""
    if len(sizes) < 2:
        raise ValueError(
            f"sizes must name at least an input and an output width, got {list(sizes)}"
        )
    for i, width in enumerate(sizes):
        validate.positive_int(width, f"sizes[{i}]")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class DeepMLP(nn.Module):
    """A deep MLP of ``n_layers`` blocks of width ``d_model``, plain or residual.

        x (n, d_in) ─ Linear ─▶ h₀ ─ block₁ ─ … ─ block_L ─ norm ─ act ─ Linear ─▶ (n, d_out)

        block_l (plain):     h_l = f_l(h_{l-1})
        block_l (residual):  h_l = h_{l-1} + f_l(h_{l-1})          (He et al. 2016)
        f_l(h) = Linear(act(norm(h)))     norm ∈ {None, "batch", "layer"}

    Both variants have the same parameters: the residual connection adds none.
    """

    def __init__(
        self,
        d_in: int,
        d_model: int,
        n_layers: int,
        d_out: int,
        activation: str = "relu",
        norm: str | None = None,
        residual: bool = False,
    ) -> None:
        super().__init__()
        for value, name in ((d_in, "d_in"), (d_model, "d_model"), (n_layers, "n_layers")):
            validate.positive_int(value, name)
        validate.positive_int(d_out, "d_out")
        validate.one_of(norm, (None, "batch", "layer"), "norm")
        self.residual = residual
        self.act = Activation(activation)
        self.inp = nn.Linear(d_in, d_model)
        self.norms = nn.ModuleList(_norm(norm, d_model) for _ in range(n_layers + 1))
        self.blocks = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_layers))
        self.out = nn.Linear(d_model, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, d_in) → (n, d_out)``."""
        h = self.inp(x)  # (n, d_model)
        for norm, linear in zip(self.norms, self.blocks):
            f = linear(self.act(norm(h)))
            h = h + f if self.residual else f
        return self.out(self.act(self.norms[-1](h)))


def _norm(kind: str | None, d_model: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(d_model)
    if kind == "layer":
        return nn.LayerNorm(d_model)
    return nn.Identity()
