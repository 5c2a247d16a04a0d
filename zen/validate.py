"""Input validation shared by every public ``zen`` function.

Each helper raises an error whose message names what was expected and what came,
so a student sees at once which argument is wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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


def ndim_at_least(x: torch.Tensor, n: int, name: str, layout: str = "") -> None:
    """Check ``x`` is a tensor with at least ``n`` dims; ``layout`` describes the expected axes."""
    tensor(x, name)
    if x.ndim < n:
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{name} must have at least {n} dims{hint}, got shape {tuple(x.shape)}")


def features(x: torch.Tensor, n: int, name: str) -> None:
    """Check the last dim of ``x`` (its feature count) is ``n``."""
    if x.shape[-1] != n:
        raise ValueError(f"{name} must have {n} features (last dim), got shape {tuple(x.shape)}")


def same_shape(x: torch.Tensor, like: torch.Tensor, name: str, like_name: str) -> None:
    """Check ``x`` has the shape of ``like``."""
    tensor(x, name)
    if x.shape != like.shape:
        raise ValueError(
            f"{name} must have the shape of {like_name} {tuple(like.shape)}, got {tuple(x.shape)}"
        )


def positive(value: object, name: str) -> float:
    """Check ``value`` is a real number greater than zero and return it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return value


def one_of(value: object, choices: Iterable[object], name: str) -> object:
    """Check ``value`` is one of ``choices`` and return it."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def divisible(a: int, b: int, name_a: str, name_b: str) -> None:
    """Check ``b`` divides ``a`` (for example ``n_heads`` divides ``d_model``)."""
    if a % b:
        raise ValueError(f"{name_a} must be divisible by {name_b}, got {name_a}={a}, {name_b}={b}")


def token_ids(
    ids: torch.Tensor,
    vocab_size: int,
    name: str = "input_ids",
    dims: int | None = 2,
    values: bool | None = None,
) -> torch.Tensor:
    """Check ``ids`` holds integer token ids (``TypeError`` otherwise) in ``[0, vocab_size)``.

    ``dims`` is the expected ``ndim`` (``None``: any). The values are read back only when
    ``values`` is true, or by default (``None``) when ``ids`` lives on the CPU: reading a
    CUDA tensor's ``min()``/``max()`` would synchronise the device on every call, so models
    leave it to the caller to check once, outside a loop (``GPT.generate`` checks its prompt
    with ``values=True`` and then feeds only ids it sampled itself).
    """
    tensor(ids, name)
    if ids.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must hold integer token ids (int64), got {ids.dtype}")
    if dims is not None and ids.ndim != dims:
        raise ValueError(f"{name} must be {dims}-D, got shape {tuple(ids.shape)}")
    if values is None:
        values = ids.device.type == "cpu" and not torch.compiler.is_compiling()
    if values and ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= vocab_size:
            raise ValueError(f"{name} must lie in [0, {vocab_size}), got values in [{lo}, {hi}]")
    return ids


def pair(value: object, name: str, minimum: int = 1) -> tuple[int, int]:
    """Read an ``int`` or an ``(h, w)`` pair of ints, each at least ``minimum``, as a pair.

    The convention of ``torch.nn.functional.conv2d`` for ``stride``, ``padding``, ``dilation``
    and kernel sizes: one number for both spatial dims, or one per dim.
    """
    values = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    if len(values) != 2 or any(
        isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values
    ):
        raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return values  # type: ignore[return-value]


def channels(x: torch.Tensor, n: int, name: str, expected_by: str) -> None:
    """Check dim 1 of an NCHW tensor ``x`` (its channel count) is ``n``, as ``expected_by`` says."""
    if x.shape[1] != n:
        raise ValueError(
            f"{name} must have {n} channel{'s' * (n != 1)} (dim 1, NCHW) as {expected_by} expects, "
            f"got shape {tuple(x.shape)}"
        )


def window_fits(size: int, window: int, padding: int, name: str) -> None:
    """Check a sliding window of extent ``window`` fits in ``size + 2·padding`` positions.

    ``window`` is the effective extent ``dilation·(kernel − 1) + 1``; ``name`` names the axis.
    Otherwise the output would have no position along that axis.
    """
    if size + 2 * padding < window:
        raise ValueError(
            f"the {name} of the input plus padding ({size} + 2·{padding}) is smaller than the "
            f"kernel's extent {window}: no output position fits"
        )
