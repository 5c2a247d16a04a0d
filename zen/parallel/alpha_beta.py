"""Measuring α and β, and checking the α–β model against a measured all-reduce.

The model (:func:`zen.parallel.collectives.all_reduce_time`) prices a message of ``b`` bytes
at ``α + β b``. Which message? Every step of a ring all-reduce is a *simultaneous exchange*:
each rank sends a chunk right while it receives one from the left. On a network with
full-duplex links that costs what a one-way message costs; over a machine's loopback, where
the CPU copies every byte through the kernel, both directions compete for the same cores.
:func:`exchange_times` therefore measures the exchange itself, and :func:`all_reduce_times`
times a whole all-reduce to compare with the prediction. Both return the fastest of
``repeats`` runs (after two warm-ups): the least disturbed by other processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from zen import validate
from zen.parallel.collectives import ring_all_reduce


def _fastest(run: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(validate.positive_int(repeats, "repeats") + 2):  # two warm-up rounds
        dist.barrier()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times[2:])


def exchange_times(n_elements: list[int], repeats: int = 10) -> list[float]:
    """Seconds for ranks 0 and 1 to swap ``n`` float32 elements at once, for each ``n``.

    Run inside a group of at least two ranks; other ranks only join the barriers.
    """
    r = dist.get_rank()
    out = []
    for n in n_elements:
        send = torch.zeros(validate.positive_int(n, "n_elements"))
        recv = torch.empty_like(send)

        def swap() -> None:
            if r < 2:
                request = dist.isend(send, 1 - r)
                dist.recv(recv, 1 - r)
                request.wait()

        out.append(_fastest(swap, repeats))
    return out


def all_reduce_times(n_elements: list[int], repeats: int = 10, ring: bool = True) -> list[float]:
    """Seconds for one all-reduce of ``n`` float32 elements, for each ``n``, on every rank.

    ``ring=True`` times :func:`~zen.parallel.collectives.ring_all_reduce` (built from the
    exchanges :func:`exchange_times` measures), ``False`` gloo's ``dist.all_reduce``.
    """
    out = []
    for n in n_elements:
        x = torch.zeros(validate.positive_int(n, "n_elements"))
        out.append(_fastest(lambda: ring_all_reduce(x) if ring else dist.all_reduce(x), repeats))
    return out
