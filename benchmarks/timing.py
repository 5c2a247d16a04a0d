"""Timing shared by the benchmark scripts: medians of interleaved repetitions."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock reading covers it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, reps: int
) -> dict[str, float]:
    """Median seconds per call of each ``fns[name]()``.

    Calls are interleaved (round-robin), so a burst of load on a shared machine hits every
    contender alike, and the median discards the odd slow repetition.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def forward_backward(
    loss_fn: Callable[[], torch.Tensor], leaves: list[torch.Tensor]
) -> Callable[[], None]:
    """A closure for the timers: clear the gradients of ``leaves``, then backpropagate loss_fn()."""

    def run() -> None:
        for leaf in leaves:
            leaf.grad = None
        loss_fn().backward()

    return run
