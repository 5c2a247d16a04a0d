"""The parameter server: the first way to train on many machines, and why it stopped scaling.

One process (the *server*, here rank 0, which also computes like a worker) holds the master
copy of the parameters. Each step every worker *pushes* its gradient to the server, the server
averages them, updates the parameters and every worker *pulls* the new parameters back.

The arithmetic is the same as all-reduce data parallelism; the traffic is not. The server
receives ``p - 1`` full gradients and sends ``p - 1`` full parameter copies per step, so its link
carries ``2 (p - 1)`` model sizes while a ring all-reduce asks ``2 (p - 1) / p`` of each rank. As
``p`` grows the server's link becomes the bottleneck (see
:func:`zen.parallel.collectives.all_reduce_time` with ``algorithm="central"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from zen.parallel.collectives import Traffic

SERVER = 0


def parameter_server_step(
    model: nn.Module,
    lr: float,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    traffic: Traffic | None = None,
) -> float:
    """One synchronous SGD step through the server; returns this rank's local loss.

    Workers push gradients to rank 0 and pull parameters back. ``traffic`` counts what this
    rank sends (the server's count grows with the number of workers; a worker's does not).
    """
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    model.zero_grad(set_to_none=False)
    loss = loss_fn(model(x), y)
    loss.backward()
    grad = parameters_to_vector(p.grad for p in params)  # (total_params,)
    p, r = dist.get_world_size(), dist.get_rank()
    with torch.no_grad():
        if r == SERVER:
            incoming = torch.empty_like(grad)
            for src in range(1, p):  # push: the server's link receives p - 1 gradients
                dist.recv(incoming, src)
                grad += incoming
            weights = parameters_to_vector(params) - lr * grad / p
            for dst in range(1, p):  # pull: and sends p - 1 parameter copies
                dist.send(weights, dst)
                if traffic is not None:
                    traffic.add(weights)
        else:
            dist.send(grad, SERVER)
            if traffic is not None:
                traffic.add(grad)
            weights = torch.empty_like(grad)
            dist.recv(weights, SERVER)
        vector_to_parameters(weights, params)
    return loss.item()
