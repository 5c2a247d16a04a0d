"""The multi-layer perceptron: linear maps with a non-linearity between them.

    x (n, sizes[0]) ─ Linear ─ act ─ Linear ─ act ─ … ─ Linear ─▶ (n, sizes[-1])

No activation follows the last layer: the caller decides what the output means (logits, a
mean, a pixel through a sigmoid).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from zen import validate


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
