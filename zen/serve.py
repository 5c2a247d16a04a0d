"""Serving a model: dynamic batching on a simulated clock.

A server receives requests one at a time but runs the model on batches, because a batch of
``b`` costs far less than ``b`` single calls. *Dynamic batching* waits for more requests, but
not too long: when the server is free it starts a batch as soon as ``max_batch`` requests are
waiting, or when the oldest waiting request has waited ``max_wait`` seconds, whichever comes
first (then it takes every waiting request, up to ``max_batch``)::

    arrivals t_1 ≤ t_2 ≤ ...  ──► queue ──► [batch of ≤ max_batch] ──► model: service(b) s
                                   ▲                         │
                                   └── starts when the server is free and (queue full or
                                       the oldest request has waited max_wait)

The simulation needs no threads and no network: the clock jumps from event to event, and
``service(b)`` (seconds for a batch of ``b``, measured beforehand) stands for the model. Each
request's latency is its batch's finish time minus its arrival time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from zen import validate


class BatchingResult(NamedTuple):
    """Latency ``(n,)`` per request (seconds), and ``(batches,)`` start times and sizes."""

    latency: torch.Tensor
    batch_start: torch.Tensor
    batch_size: torch.Tensor


def poisson_arrivals(rate: float, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Arrival times ``(n,)`` (float64, seconds) of a Poisson process with ``rate`` per second."""
    validate.positive(rate, "rate")
    validate.positive_int(n, "n")
    gaps = torch.empty(n, dtype=torch.float64).exponential_(rate, generator=generator)
    return gaps.cumsum(0)


def simulate_batching(
    arrivals: torch.Tensor,
    service: Callable[[int], float],
    max_batch: int,
    max_wait: float = 0.0,
) -> BatchingResult:
    """Run one server with dynamic batching over sorted ``arrivals`` ``(n,)`` (seconds).

    ``service(b)`` is the time to run a batch of ``b``; ``max_batch`` caps a batch and
    ``max_wait`` (seconds, >= 0) is how long the oldest waiting request may be held for more.
    """
    validate.ndim(arrivals, 1, "arrivals", "(n,)")
    validate.floating(arrivals, "arrivals")
    if arrivals.numel() == 0:
        raise ValueError("arrivals must not be empty")
    if bool((arrivals[1:] < arrivals[:-1]).any()):
        raise ValueError("arrivals must be sorted in time")
    validate.positive_int(max_batch, "max_batch")
    if max_wait < 0:
        raise ValueError(f"max_wait must be >= 0 seconds, got {max_wait!r}")
    times = arrivals.tolist()
    n = len(times)
    latency = [0.0] * n
    starts, sizes = [], []
    free_at, head = 0.0, 0  # the server's next free time; the oldest request not yet served
    while head < n:
        ready = max(free_at, times[head])  # the server can start once free and a request is in
        full_at = times[min(head + max_batch, n) - 1]  # when max_batch requests will be waiting
        start = max(ready, min(full_at, times[head] + max_wait))
        end = head
        while end < n and end - head < max_batch and times[end] <= start:
            end += 1  # take every request waiting at the start, up to max_batch
        finish = start + float(service(end - head))
        for i in range(head, end):
            latency[i] = finish - times[i]
        starts.append(start)
        sizes.append(end - head)
        free_at, head = finish, end
    return BatchingResult(
        torch.tensor(latency, dtype=torch.float64),
        torch.tensor(starts, dtype=torch.float64),
        torch.tensor(sizes),
    )


def latency_percentiles(
    latency: torch.Tensor, percentiles: tuple[float, ...] = (50, 95, 99)
) -> dict[float, float]:
    """The given percentiles of ``latency`` ``(n,)`` (linear interpolation, NumPy's default)."""
    validate.ndim(latency, 1, "latency", "(n,)")
    validate.floating(latency, "latency")
    if latency.numel() == 0:
        raise ValueError("latency must not be empty")
    for p in percentiles:
        validate.in_range(p, "percentile", 0, 100)
    q = torch.tensor([p / 100 for p in percentiles], dtype=torch.float64)
    values = torch.quantile(latency.double(), q)
    return {p: float(v) for p, v in zip(percentiles, values)}
