"""A discrete search space and the digits CNN it describes, with an analytic cost model.

An architecture is a tuple with one option per choice, in the space's order::

    space = SearchSpace({"depth": (1, 2, 3), "width": (4, 8, 16), ...})
    arch  = (2, 8, ...)            # |space| = Π_c |options_c| architectures

``sample`` draws each choice uniformly (rejecting architectures the constraint forbids),
``mutate`` changes exactly one choice to a different option (the neighbourhood regularised
evolution walks), ``encode`` gives the concatenated one-hot vector a predictor reads.

The digits CNN (``depth`` same-padded convolutions of ``width`` channels and a ``kernel``,
an ``activation`` after each, identity ``skip`` connections around layers 2.., then a linear
classifier on the flattened ``(width, 8, 8)`` map) costs, per image, with ``P = 64`` pixels::

    params = Σ_l (c_l·w·k² + w)  +  (64·w·10 + 10)          c_1 = 1, c_l = w for l > 1
    FLOPs  = Σ_l 2·P·c_l·w·k²    +  2·64·w·10                a multiply-add counts 2

(biases and activations are not counted in FLOPs, as ``FlopCounterMode`` does).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from zen import validate

Arch = tuple[Hashable, ...]

__all__ = ["Arch", "SearchSpace", "digits_cnn_space", "DigitsCNN", "cnn_cost"]


class SearchSpace:
    """A product of named discrete choices, optionally restricted by ``constraint(named)``.

    Args:
        choices: ``{name: options}``; at least one choice, each with at least one option,
            options distinct.
        constraint: a predicate on ``{name: option}``; architectures where it is false are
            never sampled, mutated into or listed.
    """

    def __init__(
        self,
        choices: Mapping[str, Sequence[Hashable]],
        constraint: Callable[[dict[str, Hashable]], bool] | None = None,
    ) -> None:
        if not isinstance(choices, Mapping) or len(choices) == 0:
            raise ValueError(
                f"choices must be a non-empty mapping name -> options, got {choices!r}"
            )
        for name, opts in choices.items():
            if isinstance(opts, str) or not isinstance(opts, Sequence) or len(opts) == 0:
                raise ValueError(
                    f"choice {name!r} needs a non-empty sequence of options, got {opts!r}"
                )
            if len(set(opts)) != len(opts):
                raise ValueError(f"choice {name!r} has repeated options: {list(opts)!r}")
        self.names: tuple[str, ...] = tuple(choices)
        self.options: tuple[tuple[Hashable, ...], ...] = tuple(tuple(o) for o in choices.values())
        self.constraint = constraint
        if not any(True for _ in self):
            raise ValueError("the constraint rules out every architecture: the space is empty")

    @property
    def size(self) -> int:
        """Number of architectures before the constraint (the product of the option counts)."""
        return math.prod(len(o) for o in self.options)

    def named(self, arch: Arch) -> dict[str, Hashable]:
        """``{choice: option}`` of ``arch``."""
        self.check(arch)
        return dict(zip(self.names, arch))

    def feasible(self, arch: Arch) -> bool:
        """Whether ``arch`` satisfies the constraint (always true without one)."""
        return self.constraint is None or bool(self.constraint(dict(zip(self.names, arch))))

    def check(self, arch: Arch) -> None:
        """Raise ``ValueError`` unless ``arch`` is a tuple with a valid option for every choice."""
        if not isinstance(arch, tuple) or len(arch) != len(self.names):
            raise ValueError(
                f"an architecture is a tuple of {len(self.names)} options "
                f"{self.names}, got {arch!r}"
            )
        for name, opts, value in zip(self.names, self.options, arch):
            if value not in opts:
                raise ValueError(f"choice {name!r} must be one of {list(opts)}, got {value!r}")

    def __iter__(self) -> Iterator[Arch]:
        """Every feasible architecture, in lexicographic order of the option indices."""
        return (a for a in itertools.product(*self.options) if self.feasible(a))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def sample(self, rng: np.random.Generator, max_tries: int = 10_000) -> Arch:
        """One feasible architecture, each choice uniform (rejection sampling on the constraint)."""
        for _ in range(max_tries):
            arch = tuple(opts[rng.integers(len(opts))] for opts in self.options)
            if self.feasible(arch):
                return arch
        raise RuntimeError(
            f"no feasible architecture in {max_tries} samples: constraint too tight?"
        )

    def mutate(self, arch: Arch, rng: np.random.Generator, max_tries: int = 10_000) -> Arch:
        """``arch`` with one uniformly chosen choice (of those with ≥ 2 options) changed."""
        self.check(arch)
        free = [i for i, opts in enumerate(self.options) if len(opts) > 1]
        if not free:
            raise ValueError("every choice has one option: there is nothing to mutate")
        for _ in range(max_tries):
            i = free[rng.integers(len(free))]
            others = [o for o in self.options[i] if o != arch[i]]
            child = arch[:i] + (others[rng.integers(len(others))],) + arch[i + 1 :]
            if self.feasible(child):
                return child
        raise RuntimeError(f"no feasible mutation of {arch!r} in {max_tries} tries")

    def encode(self, arch: Arch) -> np.ndarray:
        """Concatenated one-hot vector of ``arch``, shape ``(Σ_c |options_c|,)``, float32."""
        self.check(arch)
        parts = [
            np.eye(len(opts), dtype=np.float32)[opts.index(v)]
            for opts, v in zip(self.options, arch)
        ]
        return np.concatenate(parts)


def digits_cnn_space(
    depths: Sequence[int] = (1, 2, 3),
    widths: Sequence[int] = (4, 8, 16),
    kernels: Sequence[int] = (1, 3, 5),
    activations: Sequence[str] = ("relu", "tanh"),
    max_flops: int | None = None,
) -> SearchSpace:
    """The chapter's CNN space; ``max_flops`` (per image, :func:`cnn_cost`) is the constraint."""
    choices = {
        "depth": tuple(depths),
        "width": tuple(widths),
        "kernel": tuple(kernels),
        "activation": tuple(activations),
        "skip": (False, True),
    }
    if max_flops is None:
        return SearchSpace(choices)
    return SearchSpace(choices, lambda a: cnn_cost(**a)["flops"] <= max_flops)


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


class DigitsCNN(nn.Module):
    """``depth`` same-padded convolutions (optional identity skips), then a linear classifier.

    Input ``(batch, in_channels, side, side)``, output logits ``(batch, num_classes)``.
    """

    def __init__(
        self,
        depth: int,
        width: int,
        kernel: int,
        activation: str = "relu",
        skip: bool = False,
        in_channels: int = 1,
        side: int = 8,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        for v, n in ((depth, "depth"), (width, "width"), (kernel, "kernel"), (side, "side")):
            validate.positive_int(v, n)
        if kernel % 2 == 0:
            raise ValueError(f"kernel must be odd (same padding), got {kernel}")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        self.skip, self.in_channels, self.side = bool(skip), in_channels, side
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else width, width, kernel, padding=kernel // 2)
            for i in range(depth)
        )
        self.act = _ACTIVATIONS[activation]()
        self.head = nn.Linear(width * side * side, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        validate.ndim(x, 4, "x", "(batch, channels, side, side)")
        for i, conv in enumerate(self.convs):
            h = self.act(conv(x))  # (batch, width, side, side)
            x = x + h if self.skip and i > 0 else h
        return self.head(x.flatten(1))  # (batch, width·side²) -> (batch, num_classes)


def cnn_cost(
    depth: int, width: int, kernel: int, in_channels: int = 1, side: int = 8,
    num_classes: int = 10, **other_choices: object,
) -> dict[str, int]:  # fmt: skip
    """Parameters and forward FLOPs per image of :class:`DigitsCNN` (module docstring).

    ``other_choices`` (``activation``, ``skip``) are accepted, so that ``cnn_cost(**named)``
    works, and ignored: neither changes the count.
    """
    pixels = side * side
    c_in = [in_channels] + [width] * (depth - 1)
    conv_params = sum(c * width * kernel**2 + width for c in c_in)
    head = width * pixels * num_classes
    return {
        "params": conv_params + head + num_classes,
        "flops": sum(2 * pixels * c * width * kernel**2 for c in c_in) + 2 * head,
    }
