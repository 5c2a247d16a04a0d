"""Watching a deployed classifier: calibration and drift.

**Calibration.** A classifier is calibrated when, among the inputs it gives confidence ``p``, a
share ``p`` is right. Sort the ``N`` predictions into equal-width confidence bins
``B_1..B_M`` (bin ``m`` holds confidences in ``((m-1)/M, m/M]``); the *reliability diagram*
plots each bin's accuracy against its mean confidence, and the *expected calibration error* is
their gap weighted by the bin's share::

    ECE = Σ_m |B_m| / N · |acc(B_m) − conf(B_m)|

*Temperature scaling* {cite}`guo2017calibration` divides the logits by one scalar ``T > 0``
fitted on held-out data by minimising the negative log-likelihood; the argmax (so the
accuracy) is unchanged, only the confidence moves. NLL is convex in ``1/T``, so a
golden-section search over ``log T`` finds the minimum.

**Drift.** A monitor compares the distribution of a stream of model scores (here one number
per request, e.g. the top-class confidence) with a reference window:

* the two-sample **Kolmogorov–Smirnov** statistic ``D = sup_x |F_ref(x) − F_cur(x)|`` of the
  two empirical CDFs, with the asymptotic critical value ``c(α) · sqrt((n + m) / (n m))``,
  ``c(α) = sqrt(−ln(α / 2) / 2)``;
* the **population stability index** ``PSI = Σ_k (q_k − p_k) ln(q_k / p_k)`` over bins cut at
  the reference's quantiles (``p_k`` reference shares, ``q_k`` current shares)::

      reference (n,) ──┐
                       ├─ statistic(reference, stream[t − w : t]) for t = w, w + s, ... → (T,)
      stream    (L,) ──┘            alert at the first t whose statistic exceeds a threshold
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from zen import validate


def _scores(x: object, name: str) -> torch.Tensor:
    validate.ndim(x, 1, name, "(n,)")
    validate.floating(x, name)
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    return x.double()


def _probs_labels(probs: torch.Tensor, labels: torch.Tensor) -> None:
    validate.ndim(probs, 2, "probs", "(N, classes)")
    validate.floating(probs, "probs")
    validate.ndim(labels, 1, "labels", "(N,)")
    validate.same_size(probs, labels, 0, "probs", "labels")
    if probs.shape[0] == 0:
        raise ValueError("probs must hold at least one prediction, got 0 rows")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class ids, got {labels.dtype}")
    if probs.min() < 0 or (probs.sum(1) - 1).abs().max() > 1e-4:
        raise ValueError("probs must be probabilities: non-negative rows that sum to 1")


def reliability_bins(
    confidence: torch.Tensor, correct: torch.Tensor, n_bins: int = 10
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-bin mean confidence, accuracy and count of ``n_bins`` equal-width bins on [0, 1].

    ``confidence`` ``(N,)`` in [0, 1], ``correct`` ``(N,)`` booleans or 0/1; bin ``m`` holds
    ``((m-1)/M, m/M]`` (a confidence of 0 goes to the first). Empty bins have count 0 and
    confidence and accuracy 0. Returns three ``(n_bins,)`` float64 tensors.
    """
    confidence = _scores(confidence, "confidence")
    validate.ndim(correct, 1, "correct", "(N,)")
    validate.same_size(confidence, correct, 0, "confidence", "correct")
    validate.positive_int(n_bins, "n_bins")
    if confidence.min() < 0 or confidence.max() > 1:
        raise ValueError("confidence must lie in [0, 1]")
    inner = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=confidence.device)[1:-1]
    bin_id = torch.bucketize(confidence, inner)  # (N,) in 0..n_bins-1, right-closed bins
    count = torch.bincount(bin_id, minlength=n_bins).double()
    conf_sum = torch.bincount(bin_id, weights=confidence, minlength=n_bins)
    acc_sum = torch.bincount(bin_id, weights=correct.double(), minlength=n_bins)
    safe = count.clamp(min=1)
    return conf_sum / safe, acc_sum / safe, count


def expected_calibration_error(
    probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10
) -> float:
    """ECE of predicted class probabilities ``probs`` ``(N, classes)`` against ``labels`` ``(N,)``.

    The confidence is the top probability, a prediction is correct when its argmax is the label.
    """
    _probs_labels(probs, labels)
    confidence, predicted = probs.double().max(dim=1)
    conf, acc, count = reliability_bins(confidence, predicted == labels, n_bins)
    return float((count / count.sum() * (acc - conf).abs()).sum())


def fit_temperature(
    logits: torch.Tensor,
    labels: torch.Tensor,
    low: float = 0.05,
    high: float = 20.0,
    iters: int = 80,
) -> float:
    """The temperature ``T`` in ``[low, high]`` minimising ``cross_entropy(logits / T, labels)``.

    ``logits`` ``(N, classes)`` held-out logits, ``labels`` ``(N,)``. Golden-section search over
    ``log T`` (NLL is convex in ``1/T``, hence unimodal in ``log T``).
    """
    validate.ndim(logits, 2, "logits", "(N, classes)")
    validate.floating(logits, "logits")
    validate.ndim(labels, 1, "labels", "(N,)")
    validate.same_size(logits, labels, 0, "logits", "labels")
    if not 0 < low < high:
        raise ValueError(f"need 0 < low < high, got low={low!r}, high={high!r}")
    logits = logits.detach().double()

    def nll(log_t: float) -> float:
        return F.cross_entropy(logits / math.exp(log_t), labels).item()

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    for _ in range(iters):
        if fc < fd:  # the minimum lies in [a, d]
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:  # the minimum lies in [c, b]
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return math.exp((a + b) / 2)


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov–Smirnov statistic ``sup_x |F_a(x) − F_b(x)|`` of ``(n,)``, ``(m,)``."""
    a, b = torch.sort(_scores(a, "a")).values, torch.sort(_scores(b, "b")).values
    points = torch.cat([a, b])  # the sup is reached at a sample point
    cdf_a = torch.searchsorted(a, points, right=True).double() / a.numel()
    cdf_b = torch.searchsorted(b, points, right=True).double() / b.numel()
    return float((cdf_a - cdf_b).abs().max())


def ks_critical_value(n: int, m: int, alpha: float = 0.05) -> float:
    """Asymptotic level-``alpha`` critical value of the two-sample KS statistic for sizes n, m."""
    validate.positive_int(n, "n")
    validate.positive_int(m, "m")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def psi(
    reference: torch.Tensor, current: torch.Tensor, n_bins: int = 10, eps: float = 1e-4
) -> float:
    """Population stability index of ``current`` ``(m,)`` against ``reference`` ``(n,)``.

    Bins are cut at the reference's ``n_bins``-quantiles; shares are floored at ``eps`` so an
    empty bin gives a large but finite index. Identical distributions give 0.
    """
    reference, current = _scores(reference, "reference"), _scores(current, "current")
    validate.positive_int(n_bins, "n_bins")
    q = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64, device=reference.device)[1:-1]
    edges = torch.quantile(reference, q)  # (n_bins - 1,)
    p = torch.bincount(torch.bucketize(reference, edges), minlength=n_bins) / reference.numel()
    c = torch.bincount(torch.bucketize(current, edges), minlength=n_bins) / current.numel()
    p, c = p.double().clamp(min=eps), c.double().clamp(min=eps)
    return float(((c - p) * (c / p).log()).sum())


def windowed_drift(
    stream: torch.Tensor,
    reference: torch.Tensor,
    window: int,
    stride: int = 1,
    method: str = "ks",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The drift statistic of each sliding window of ``stream`` ``(L,)`` against ``reference``.

    Windows are ``stream[t - window : t]`` for ``t = window, window + stride, ...``; ``method``
    is ``"ks"`` (:func:`ks_statistic`) or ``"psi"`` (:func:`psi`). Returns ``(ends, stats)``,
    two ``(T,)`` tensors: the window end ``t`` (exclusive) and its statistic.
    """
    stream, reference = _scores(stream, "stream"), _scores(reference, "reference")
    validate.positive_int(window, "window")
    validate.positive_int(stride, "stride")
    validate.one_of(method, ("ks", "psi"), "method")
    if window > stream.numel():
        raise ValueError(f"window ({window}) is longer than the stream ({stream.numel()})")
    statistic = ks_statistic if method == "ks" else psi
    ends = torch.arange(window, stream.numel() + 1, stride)
    stats = torch.tensor([statistic(reference, stream[t - window : t]) for t in ends.tolist()])
    return ends, stats.double()


def first_alert(ends: torch.Tensor, stats: torch.Tensor, threshold: float, start: int = 0) -> int:
    """The first window end ``t >= start`` whose statistic exceeds ``threshold``; -1 if none."""
    validate.same_shape(ends, stats, "ends", "stats")
    hit = (stats > threshold) & (ends >= start)
    return int(ends[hit][0]) if bool(hit.any()) else -1
