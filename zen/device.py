"""Choosing a device and making runs reproducible.

Every notebook starts with::

    device = zen.get_device()      # cuda if present, else cpu; ZEN_DEVICE overrides
    zen.seed_everything(0)         # Python, NumPy and torch (all devices) in one call
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
    choice = prefer or os.environ.get("ZEN_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    kind = choice.split(":")[0]
    if kind not in _VALID:
        raise ValueError(f"device must be one of {_VALID} (optionally with ':index'), got {choice!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {choice!r} was requested but torch.cuda.is_available() is False")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {choice!r} was requested but MPS is not available")
    return torch.device(choice)


def seed_everything(seed: int = 0, deterministic: bool = False) -> torch.Generator:
    """Seed Python's ``random``, NumPy and torch (CPU and every CUDA device).

    Returns a ``torch.Generator`` seeded with ``seed`` for code that wants its own stream.
    With ``deterministic=True`` torch also refuses non-deterministic kernels (slower on GPU).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
