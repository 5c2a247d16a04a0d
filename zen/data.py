"""Offline data: nothing here touches the network.

* :func:`load_digits` — scikit-learn's 8×8 handwritten digits (1,797 images, shipped with
  scikit-learn) as tensors with a fixed, stratified train/test split.
* :func:`pydoc_corpus` — Python's own reference documentation (``pydoc_data.topics``,
  shipped with every CPython) as a text corpus for the language chapters.
* :func:`make_linear_regression` and :func:`make_blobs_2d` — generated data with known truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from zen import validate
from zen.device import generator as seeded_generator


@dataclass(frozen=True)
class Split:
    """A supervised data set: ``x`` of shape ``(n, ...)`` and integer labels ``y`` ``(n,)``."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Digits:
    """Train and test splits of the digits data set, pixels scaled to ``[0, 1]``."""

    train: Split
    test: Split
    image_shape: tuple[int, int] = (8, 8)
    num_classes: int = 10


def load_digits(test_fraction: float = 0.25, flat: bool = True, seed: int = 0) -> Digits:
    """Load scikit-learn's digits as float32 tensors with a fixed stratified split.

    Args:
        test_fraction: share of the 1,797 images held out for testing, in ``(0, 1)``.
        flat: ``True`` gives ``x`` of shape ``(n, 64)``; ``False`` gives ``(n, 1, 8, 8)``
            for convolutional models.
        seed: seed of the split; the default makes every chapter use the same split.
    """
    from sklearn.datasets import load_digits as _sk_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    bunch = _sk_digits()
    x = bunch.data.astype(np.float32) / 16.0  # pixel intensities are 0..16
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )

    def to_split(xs: np.ndarray, ys: np.ndarray) -> Split:
        xt = torch.from_numpy(xs)
        if not flat:
            xt = xt.reshape(-1, 1, 8, 8)  # (n, 64) -> (n, channels=1, height, width)
        return Split(xt, torch.from_numpy(ys))

    return Digits(train=to_split(x_tr, y_tr), test=to_split(x_te, y_te))


def pydoc_corpus(max_chars: int | None = None) -> str:
    """Return Python's reference documentation as one string (about 0.46 M characters).

    The topics (``assert``, ``assignment``, …) are joined in sorted order, separated by
    blank lines, so the text is the same on every machine with the same Python version.
    ``max_chars`` truncates the result (useful for small, fast experiments).
    """
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key].strip() for key in sorted(topics))
    if max_chars is not None:
        validate.positive_int(max_chars, "max_chars")
        text = text[:max_chars]
    return text


def make_linear_regression(
    n: int = 100,
    weights: tuple[float, ...] = (2.0,),
    bias: float = 1.0,
    noise: float = 0.5,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``y = x @ w + b + noise·ε`` with ``x ~ U(0, 1)^d`` and ``ε ~ N(0, 1)``.

    Returns ``x`` of shape ``(n, d)`` (``d = len(weights)``) and ``y`` of shape ``(n,)``,
    both float32. The irreducible error is ``noise**2``: no model can reach a lower
    expected mean squared error on fresh data.
    """
    validate.positive_int(n, "n")
    if len(weights) == 0:
        raise ValueError("weights must name at least one feature, got ()")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise!r}")
    g = seeded_generator(seed)
    w = torch.tensor(weights, dtype=torch.float32)
    x = torch.rand(n, len(weights), generator=g)
    y = x @ w + bias + noise * torch.randn(n, generator=g)
    return x, y


def make_blobs_2d(
    n: int = 512, centers: int = 3, spread: float = 0.3, radius: float = 2.0, seed: int = 0
) -> Split:
    """Gaussian blobs with centres evenly on a circle: ``x`` ``(n, 2)``, labels ``y`` ``(n,)``."""
    validate.positive_int(n, "n")
    validate.positive_int(centers, "centers")
    g = seeded_generator(seed)
    angles = torch.arange(centers) * (2 * torch.pi / centers)
    mu = radius * torch.stack([angles.cos(), angles.sin()], dim=1)  # (centers, 2)
    y = torch.randint(centers, (n,), generator=g)
    x = mu[y] + spread * torch.randn(n, 2, generator=g)
    return Split(x, y)


def batches(
    split: Split, batch_size: int, shuffle: bool = True, generator: torch.Generator | None = None
):
    """Yield ``(x, y)`` mini-batches of ``split``; the last batch may be smaller."""
    validate.positive_int(batch_size, "batch_size")
    n = len(split)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield split.x[idx], split.y[idx]


#: Documentation topic families of :func:`pydoc_topic_sentences`: family name → ``pydoc_data``
#: topics.
PYDOC_FAMILIES: dict[str, tuple[str, ...]] = {
    "strings & formatting": ("string-methods", "formatstrings", "strings"),
    "control flow": (
        "compound",
        "if",
        "while",
        "for",
        "try",
        "raise",
        "exceptions",
        "break",
        "continue",
        "pass",
        "return",
        "with",
        "assert",
        "else",
    ),
    "special methods": (
        "specialnames",
        "customization",
        "attribute-access",
        "numeric-types",
        "sequence-types",
        "context-managers",
        "callable-types",
    ),
    "debugger": ("debugger",),
    "containers": ("typesseq", "typesseq-mutable", "typesmapping", "dict", "lists"),
}


def pydoc_topic_sentences(
    min_chars: int = 40, max_chars: int = 250
) -> tuple[list[str], torch.Tensor, list[str]]:
    """Real sentences of Python's documentation labelled by the topic family they come from.

    A sentence-classification task made from :func:`pydoc_corpus` (think of routing a user's
    question to the right section of a manual): each sentence of a topic in
    :data:`PYDOC_FAMILIES` gets that family's index. Sentences are split at ``. ! ?``, with
    whitespace collapsed; only those of ``min_chars``–``max_chars`` characters that are mostly
    letters (prose, not code or grammar) are kept. Duplicates are merged, and a sentence found
    under two families is dropped, so no text has two labels.

    Returns:
        ``(sentences, labels (n,) int64, family_names)``, sorted by sentence (deterministic).
    """
    import re
    from pydoc_data.topics import topics

    validate.positive_int(min_chars, "min_chars")
    if max_chars < min_chars:
        raise ValueError(f"max_chars must be >= min_chars, got {max_chars} < {min_chars}")
    families: dict[str, set[int]] = {}
    for label, keys in enumerate(PYDOC_FAMILIES.values()):
        for key in keys:
            for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", topics[key])):
                if min_chars <= len(s) <= max_chars and sum(c.isalpha() for c in s) > 0.7 * len(s):
                    families.setdefault(s, set()).add(label)
    kept = sorted((s, next(iter(labels))) for s, labels in families.items() if len(labels) == 1)
    sentences = [s for s, _ in kept]
    return sentences, torch.tensor([y for _, y in kept]), list(PYDOC_FAMILIES)
