"""Plotting helpers with one consistent look across the book.

Importing it changes no global setting: a chapter calls :func:`use_style` in its first cell
to apply the course style. Every helper takes an optional ``ax`` and returns the axes it drew
on, so chapters can compose figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

STYLE = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.frameon": False,
    "image.cmap": "viridis",
}


def use_style() -> None:
    """Apply the course's matplotlib style."""
    plt.rcParams.update(STYLE)


def plot_history(
    history,
    keys: Sequence[str] | None = None,
    ax: plt.Axes | None = None,
    title: str = "Training history",
) -> plt.Axes:
    """Plot per-epoch curves of a :class:`zen.train.History` (default: every key)."""
    ax = ax or plt.subplots()[1]
    for key in keys or sorted(history.epochs):
        values = history.epochs[key]
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, label=key)
    ax.set(xlabel="epoch", ylabel="value", title=title)
    ax.legend()
    return ax


def plot_losses(
    curves: dict[str, Sequence[float]],
    ax: plt.Axes | None = None,
    title: str = "Loss",
    xlabel: str = "step",
    logy: bool = False,
) -> plt.Axes:
    """Plot several named loss curves on one axes."""
    ax = ax or plt.subplots()[1]
    for label, values in curves.items():
        ax.plot(np.asarray(values, dtype=float), label=label)
    ax.set(xlabel=xlabel, ylabel="loss", title=title)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    return ax


def image_grid(
    images: torch.Tensor | np.ndarray,
    labels: Sequence[object] | None = None,
    ncols: int = 8,
    title: str | None = None,
    cmap: str = "gray_r",
    size: float = 1.1,
) -> plt.Figure:
    """Show images ``(n, h, w)``, ``(n, 1, h, w)`` or ``(n, h*w)`` (square) in a grid.

    Optionally with captions.
    """
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]  # (n, 1, h, w) -> (n, h, w)
    elif arr.ndim == 2:
        side = int(round(arr.shape[1] ** 0.5))
        if side * side != arr.shape[1]:
            raise ValueError(f"flat images must have a square number of pixels, got {arr.shape[1]}")
        arr = arr.reshape(-1, side, side)  # (n, h*w) -> (n, h, w)
    if arr.ndim != 3:
        raise ValueError(
            f"images must be (n, h, w), (n, 1, h, w) or (n, h*w), got shape {arr.shape}"
        )
    n = len(arr)
    if n == 0:
        raise ValueError("images is empty")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if title else 0)), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(arr[i], cmap=cmap)
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
