"""Choosing a device and making runs reproducible, for every draw.

Every notebook starts with::

    device = zen.get_device()      # cuda if present, else cpu; ZEN_DEVICE overrides
    zen.seed_everything(0)         # Python, NumPy and torch (all devices) in one call

and takes any local random stream from :func:`generator` (torch) or :func:`rng` (NumPy),
never from ``torch.manual_seed`` or ``np.random.default_rng`` directly. All of them add the
offset named by ``ZEN_SEED`` (default 0) to the seed they are given, so one variable re-runs
the whole course on another draw: ``ZEN_SEED=3 zen execute book/`` and ``zen sweep`` check
that a chapter's claims hold for every draw, not only for the one that was committed.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

_VALID = ("cpu", "cuda", "mps")


def get_device(prefer: str | None = None) -> torch.device:
    """Return the device to compute on.

    Order of precedence: the ``prefer`` argument, then the ``ZEN_DEVICE`` environment
    variable, then ``cuda`` when a GPU is visible, else ``cpu``. Asking for ``cuda`` on a
    machine without one raises ``RuntimeError`` rather than failing later inside a kernel.
    """
    choice = (
        prefer or os.environ.get("ZEN_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    )
    kind = choice.split(":")[0]
    if kind not in _VALID:
        raise ValueError(
            f"device must be one of {_VALID} (optionally with ':index'), got {choice!r}"
        )
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {choice!r} was requested but torch.cuda.is_available() is False"
        )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {choice!r} was requested but MPS is not available")
    return torch.device(choice)


def seed_offset() -> int:
    """The offset ``ZEN_SEED`` adds to every seed in the course (default 0)."""
    value = os.environ.get("ZEN_SEED", "").strip() or "0"
    if not value.isdigit():
        raise ValueError(f"ZEN_SEED must be a non-negative integer, got {value!r}")
    return int(value)


def _offset_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed + seed_offset()


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch (CPU, every CUDA device) with ``seed + ZEN_SEED``.

    Returns a ``torch.Generator`` seeded the same way, for code that wants its own stream.
    With ``deterministic=True`` torch also refuses non-deterministic kernels (slower on GPU).
    """
    seed = _offset_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed + ZEN_SEED``: a local random stream.

    Use it for data and initialisations that must not disturb (or be disturbed by) the
    global stream: ``torch.randn(4, 3, generator=zen.generator(1))``.
    """
    return torch.Generator(device=device).manual_seed(_offset_seed(seed))


def rng(seed: int) -> np.random.Generator:
    """A NumPy ``Generator`` seeded with ``seed + ZEN_SEED`` (NumPy's twin of :func:`generator`)."""
    return np.random.default_rng(_offset_seed(seed))
