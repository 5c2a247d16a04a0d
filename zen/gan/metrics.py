"""Sample diagnostics: mode coverage on a Gaussian mixture, and k-NN precision, recall, coverage."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from zen import validate


@dataclass(frozen=True)
class ModeReport:
    """Outcome of :func:`mode_coverage`."""

    covered: int  # modes holding at least min_count high-quality samples
    high_quality: float  # share of samples within `threshold` stds of their nearest mode
    counts: torch.Tensor  # (k,) high-quality samples per mode


def mode_coverage(
    samples: torch.Tensor,
    centers: torch.Tensor,
    std: float,
    threshold: float = 3.0,
    min_count: int | None = None,
) -> ModeReport:
    """Mode-collapse diagnostic for a mixture of ``k`` isotropic Gaussians with centres ``(k, d)``.

    A sample ``(n, d)`` is *high quality* when it lies within ``threshold·std`` of its nearest
    centre; a mode is *covered* when at least ``min_count`` high-quality samples fall on it
    (default: a quarter of a fair share, ``n / (4k)``). A perfect sampler covers all ``k``
    modes with a high-quality share near ``P(χ²_d ≤ threshold²)`` (98.9 % for d = 2, threshold 3).
    """
    validate.ndim(samples, 2, "samples", "(n, d)")
    validate.ndim(centers, 2, "centers", "(k, d)")
    validate.same_size(samples, centers, 1, "samples", "centers")
    if std <= 0 or threshold <= 0:
        raise ValueError(
            f"std and threshold must be positive, got std={std!r}, threshold={threshold!r}"
        )
    n, k = len(samples), len(centers)
    if n == 0:
        raise ValueError("samples is empty")
    min_count = (
        max(1, n // (4 * k)) if min_count is None else validate.positive_int(min_count, "min_count")
    )
    dist = torch.cdist(samples.float(), centers.float().to(samples.device))  # (n, k)
    nearest_dist, nearest = dist.min(dim=1)  # (n,), (n,)
    good = nearest_dist <= threshold * std
    counts = torch.bincount(nearest[good], minlength=k).cpu()
    return ModeReport(
        covered=int((counts >= min_count).sum()),
        high_quality=good.float().mean().item(),
        counts=counts,
    )


@dataclass(frozen=True)
class PrecisionRecall:
    """Outcome of :func:`precision_recall`: shares in ``[0, 1]``."""

    precision: float  # share of generated samples inside the real manifold
    recall: float  # share of real samples inside the generated manifold
    coverage: float  # share of real samples whose own k-NN ball holds a generated sample


def _knn_radius(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point ``(n, d)`` to its ``k``-th nearest other point: ``(n,)``."""
    return torch.cdist(points, points).kthvalue(k + 1, dim=1).values  # the point itself is 0


def _knn_manifold(points: torch.Tensor, queries: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each query ``(m, d)`` lies within some point's k-NN radius; ``(m,)`` bool."""
    inside = torch.cdist(queries, points) <= _knn_radius(points, k)  # (m, n)
    return inside.any(dim=1)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi et al., 2019) of ``fake`` ``(m, d)`` vs ``real``
    ``(n, d)``.

    Each set's manifold is the union of balls around its points with radius the distance to
    the ``k``-th nearest neighbour within the set. **Precision** is the share of fake samples
    inside the real manifold (are the samples realistic?); **recall** the share of real samples
    inside the fake manifold (is every part of the data produced?). A collapsed generator keeps
    its precision and loses recall; use sets of equal size, since the radii shrink as a set grows.
    A few stray fake samples have large k-NN balls and can inflate recall, so **coverage**
    (Naeem et al., 2020) is also returned: the share of real samples whose own k-NN ball (among
    the real samples) holds at least one fake sample.
    """
    validate.ndim(real, 2, "real", "(n, d)")
    validate.ndim(fake, 2, "fake", "(m, d)")
    validate.same_size(real, fake, 1, "real", "fake")
    validate.positive_int(k, "k")
    if min(len(real), len(fake)) <= k:
        raise ValueError(
            f"each set needs more than k={k} samples, got {len(real)} real and {len(fake)} fake"
        )
    real, fake = real.float(), fake.float().to(real.device)
    covered = (torch.cdist(real, fake).min(dim=1).values <= _knn_radius(real, k)).float()
    return PrecisionRecall(
        precision=_knn_manifold(real, fake, k).float().mean().item(),
        recall=_knn_manifold(fake, real, k).float().mean().item(),
        coverage=covered.mean().item(),
    )
