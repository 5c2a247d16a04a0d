"""Input validation shared by every public ``zen`` function.

Each helper raises an error whose message names what was expected and what came,
so a student sees at once which argument is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def tensor(x: object, name: str) -> torch.Tensor:
    """Return ``x`` if it is a tensor, else raise ``TypeError`` naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def ndim(x: torch.Tensor, dims: int | Sequence[int], name: str, layout: str = "") -> None:
    """Check ``x.ndim`` is ``dims`` (or one of them); ``layout`` describes the expected axes."""
    tensor(x, name)
    allowed = (dims,) if isinstance(dims, int) else tuple(dims)
    if x.ndim not in allowed:
        want = " or ".join(f"{d}-D" for d in allowed)
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{name} must be {want}{hint}, got shape {tuple(x.shape)}")


def floating(x: torch.Tensor, name: str) -> None:
    """Check ``x`` has a floating-point dtype."""
    tensor(x, name)
    if not x.is_floating_point():
        raise TypeError(f"{name} must have a floating-point dtype, got {x.dtype}")


def positive_int(value: object, name: str) -> int:
    """Check ``value`` is an ``int`` greater than zero and return it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def in_range(value: float, name: str, low: float, high: float) -> float:
    """Check ``low <= value <= high`` and return ``value``."""
    if not (low <= value <= high):
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return value


def same_size(a: torch.Tensor, b: torch.Tensor, dim: int, name_a: str, name_b: str) -> None:
    """Check ``a`` and ``b`` agree along ``dim``."""
    if a.shape[dim] != b.shape[dim]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same size along dim {dim}: "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
