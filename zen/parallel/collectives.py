"""Collectives from point-to-point messages, and the α–β model of what they cost.

A ring all-reduce over ``p`` ranks cuts the tensor into ``p`` chunks and runs two phases of
``p - 1`` steps each; in every step each rank sends one chunk to its right neighbour and
receives one from its left:

1. **reduce-scatter** — received chunks are *added*; afterwards rank ``r`` holds the full sum
   of chunk ``(r + 1) mod p``;
2. **all-gather** — received chunks *overwrite*; afterwards every rank holds every summed chunk.

Each rank sends ``2 (p - 1)`` messages of ``n / p`` elements. In the α–β model a message of
``b`` bytes costs ``α + β b`` (latency plus bytes over bandwidth), so the ring costs

    T_ring = 2 (p - 1) α + 2 (p - 1) / p · n β,

whose bandwidth term is the lower bound for any all-reduce (every rank must send and receive
at least ``(p - 1) / p`` of the data twice) and hardly grows with ``p``. A central server
(``algorithm="central"``, the parameter server) receives ``p - 1`` full tensors and sends
``p - 1`` back over its one link: ``2 (p - 1) (α + n β)``, growing linearly with ``p``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from zen import validate

ALGORITHMS = ("ring", "tree", "central")


@dataclass
class Traffic:
    """Counts what one rank sent: number of messages and bytes."""

    messages: int = 0
    bytes: int = 0

    def add(self, t: torch.Tensor) -> None:
        self.messages += 1
        self.bytes += t.numel() * t.element_size()


def _exchange(
    send: torch.Tensor, recv: torch.Tensor, right: int, left: int, traffic: Traffic | None
) -> None:
    """Send ``send`` to ``right`` while receiving ``recv`` from ``left`` (no deadlock: isend first).

    Empty chunks (a tensor with fewer elements than ranks) are neither sent nor received;
    both ends agree on the chunk sizes, so they skip the same message.
    """
    request = dist.isend(send.contiguous(), right) if send.numel() else None
    if recv.numel():
        dist.recv(recv, left)
    if request is not None:
        request.wait()
        if traffic is not None:
            traffic.add(send)


def ring_reduce_scatter(chunks: list[torch.Tensor], traffic: Traffic | None = None) -> int:
    """Phase 1 of the ring: sum ``chunks`` (one per rank, in place) across ranks.

    ``chunks`` are ``p`` views of one flat tensor. On return this rank's chunk number
    ``(rank + 1) % p`` holds the sum over all ranks; the index is returned.
    """
    p, r = dist.get_world_size(), dist.get_rank()
    if len(chunks) != p:
        raise ValueError(f"need one chunk per rank ({p}), got {len(chunks)}")
    right, left = (r + 1) % p, (r - 1) % p
    for step in range(p - 1):
        send_i, recv_i = (r - step) % p, (r - step - 1) % p
        incoming = torch.empty_like(chunks[recv_i])
        _exchange(chunks[send_i], incoming, right, left, traffic)
        chunks[recv_i] += incoming
    return (r + 1) % p


def ring_all_gather(chunks: list[torch.Tensor], traffic: Traffic | None = None) -> None:
    """Phase 2 of the ring: rank ``r`` owns chunk ``(r + 1) % p``; afterwards all ranks own all."""
    p, r = dist.get_world_size(), dist.get_rank()
    if len(chunks) != p:
        raise ValueError(f"need one chunk per rank ({p}), got {len(chunks)}")
    right, left = (r + 1) % p, (r - 1) % p
    for step in range(p - 1):
        send_i, recv_i = (r + 1 - step) % p, (r - step) % p
        _exchange(chunks[send_i], chunks[recv_i], right, left, traffic)


def ring_all_reduce(tensor: torch.Tensor, traffic: Traffic | None = None) -> torch.Tensor:
    """Sum ``tensor`` (any shape) over all ranks in place with a ring; equals ``dist.all_reduce``.

    Returns ``tensor``. Pass a :class:`Traffic` to count the messages and bytes this rank sends.
    """
    validate.tensor(tensor, "tensor")
    if not dist.is_initialized():
        raise RuntimeError(
            "ring_all_reduce needs an initialised process group (see zen.parallel.launch)"
        )
    if dist.get_world_size() == 1:
        return tensor
    flat = tensor.reshape(-1) if tensor.is_contiguous() else tensor.contiguous().reshape(-1)
    chunks = list(torch.tensor_split(flat, dist.get_world_size()))  # p views, sizes differ by ≤ 1
    ring_reduce_scatter(chunks, traffic)
    ring_all_gather(chunks, traffic)
    if flat.data_ptr() != tensor.data_ptr():
        tensor.copy_(flat.view_as(tensor))
    return tensor


def central_all_reduce(
    tensor: torch.Tensor, root: int = 0, traffic: Traffic | None = None
) -> torch.Tensor:
    """Sum ``tensor`` over all ranks through one ``root`` (the parameter-server pattern), in place.

    Every other rank sends its whole tensor to ``root``, which adds them and sends the sum back.
    ``root`` sends and receives ``p - 1`` full tensors: it is the bottleneck.
    """
    validate.tensor(tensor, "tensor")
    p, r = dist.get_world_size(), dist.get_rank()
    if not 0 <= root < p:
        raise ValueError(f"root must be a rank in [0, {p - 1}], got {root}")
    if r == root:
        incoming = torch.empty_like(tensor)
        for src in range(p):
            if src != root:
                dist.recv(incoming, src)
                tensor += incoming
        for dst in range(p):
            if dst != root:
                dist.send(tensor.contiguous(), dst)
                if traffic is not None:
                    traffic.add(tensor)
    else:
        dist.send(tensor.contiguous(), root)
        if traffic is not None:
            traffic.add(tensor)
        dist.recv(tensor, root)
    return tensor


# --------------------------------------------------------------------------- the α–β model


def all_reduce_time(
    n_bytes: float, world_size: int, alpha: float, beta: float, algorithm: str = "ring"
) -> float:
    """Predicted seconds to all-reduce ``n_bytes`` over ``world_size`` ranks.

    ``alpha`` is the per-message latency (s), ``beta`` the time per byte (s/B, one over the
    link bandwidth). ``ring``: ``2(p-1)α + 2(p-1)/p·nβ``; ``tree`` (binary-tree reduce then
    broadcast): ``2⌈log2 p⌉(α + nβ)``; ``central`` (parameter server on one rank):
    ``2(p-1)(α + nβ)``.
    """
    p = validate.positive_int(world_size, "world_size")
    if n_bytes < 0 or alpha < 0 or beta < 0:
        raise ValueError(
            f"n_bytes, alpha and beta must be non-negative, got {n_bytes}, {alpha}, {beta}"
        )
    if p == 1:
        return 0.0
    if algorithm == "ring":
        return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n_bytes * beta
    if algorithm == "tree":
        return 2 * math.ceil(math.log2(p)) * (alpha + n_bytes * beta)
    if algorithm == "central":
        return 2 * (p - 1) * (alpha + n_bytes * beta)
    raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def bytes_sent_per_rank(n_bytes: float, world_size: int, algorithm: str = "ring") -> float:
    """Bytes the busiest rank sends during one all-reduce of ``n_bytes``.

    ``ring``: ``2(p-1)/p · n`` (every rank alike); ``central``: ``(p-1) · n`` (the root).
    """
    p = validate.positive_int(world_size, "world_size")
    if algorithm == "ring":
        return 2 * (p - 1) / p * n_bytes
    if algorithm == "central":
        return (p - 1) * n_bytes
    raise ValueError(f"algorithm must be 'ring' or 'central', got {algorithm!r}")


def fit_alpha_beta(
    n_bytes: list[float], seconds: list[float], relative: bool = True
) -> tuple[float, float]:
    """Least-squares fit of ``seconds ≈ α + β · n_bytes`` to point-to-point timings.

    ``relative`` minimises the *relative* residuals (each row divided by its time), so the
    microsecond latencies of small messages weigh as much as the milliseconds of large ones;
    plain least squares lets the largest message decide α, often driving it to 0.
    """
    if len(n_bytes) != len(seconds) or len(n_bytes) < 2:
        raise ValueError(
            "need at least two (n_bytes, seconds) pairs of equal length, "
            f"got {len(n_bytes)} and {len(seconds)}"
        )
    x = torch.tensor(n_bytes, dtype=torch.float64)
    y = torch.tensor(seconds, dtype=torch.float64)
    design = torch.stack([torch.ones_like(x), x], dim=1)  # (k, 2)
    if relative:
        if (y <= 0).any():
            raise ValueError("relative fitting needs positive times")
        design, y = design / y[:, None], torch.ones_like(y)
    alpha, beta = torch.linalg.lstsq(design, y[:, None]).solution.flatten().tolist()
    return max(alpha, 0.0), max(beta, 0.0)


def ping_pong(
    n_elements: list[int], repeats: int = 20, device: torch.device | str = "cpu"
) -> list[float]:
    """One-way message time (s) between ranks 0 and 1 for each size in ``n_elements`` (float32).

    Run inside a group of at least two ranks; ranks other than 0 and 1 idle. Returns the
    fastest of ``repeats`` round trips, halved: the least disturbed by other processes. On
    ``cuda`` (NCCL) the device is synchronised before the clock is read.
    """
    r = dist.get_rank()
    device = torch.device(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    out = []
    for n in n_elements:
        buf = torch.zeros(validate.positive_int(n, "n_elements"), device=device)
        times = []
        for _ in range(repeats + 2):  # two warm-up rounds
            dist.barrier()
            sync()
            start = time.perf_counter()
            if r == 0:
                dist.send(buf, 1)
                dist.recv(buf, 1)
            elif r == 1:
                dist.recv(buf, 0)
                dist.send(buf, 0)
            sync()
            times.append((time.perf_counter() - start) / 2)
        out.append(min(times[2:]))
    return out
