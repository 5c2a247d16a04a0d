"""The one scale knob: how big each notebook's experiments are.

``ZEN_SCALE=small`` (the default) keeps every notebook to about a minute on a 2-core CPU
with no GPU; that is what CI runs and what the committed outputs show. ``ZEN_SCALE=large``
is for GPU lab machines: more data, bigger models, longer training. Notebooks read their
sizes through :func:`by_scale`::

    epochs = by_scale(small=5, large=50)
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")
SCALES = ("small", "large")
DEFAULT = "small"


def get_scale() -> str:
    """Return the scale named by ``ZEN_SCALE`` (default ``small``)."""
    value = os.environ.get("ZEN_SCALE", DEFAULT).strip().lower() or DEFAULT
    if value not in SCALES:
        raise ValueError(f"ZEN_SCALE must be one of {SCALES}, got {value!r}")
    return value


def by_scale(small: T, large: T) -> T:
    """Return ``small`` or ``large`` according to :func:`get_scale`."""
    return small if get_scale() == "small" else large
