"""Pipeline parallelism: the model cut into ``p`` stages, the batch into ``m`` micro-batches.

Stage ``s`` (on rank ``s``) runs layers ``s``; activations flow forward ``s → s + 1`` and their
gradients flow back ``s + 1 → s``. A *schedule* is the order in which each stage runs the
forward (``F``) and backward (``B``) of each micro-batch:

* **GPipe** (Huang et al., 2019): all forwards, then all backwards. Stage ``s`` holds the
  activations of all ``m`` micro-batches at once.
* **1F1B** (PipeDream-flush, Narayanan et al., 2021): ``p - s - 1`` warm-up forwards, then
  alternate one forward and one backward, then the remaining backwards. Same length, but stage
  ``s`` never holds more than ``p - s`` micro-batches of activations.

With forward time ``t_f`` and backward time ``t_b`` per micro-batch and stage, both take
``(m + p - 1)(t_f + t_b)`` while each stage computes for ``m (t_f + t_b)``: the idle share, the
*bubble*, is ``(p - 1) / (m + p - 1)``. :func:`simulate` derives it from the schedule alone;
:func:`pipeline_step` runs a schedule for real across processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from zen import validate

Op = tuple[str, int]  # ("F" or "B", micro-batch index)
SCHEDULES = ("gpipe", "1f1b")


def gpipe_schedule(num_stages: int, num_micro: int) -> list[list[Op]]:
    """Per stage, the ops in order: ``F0 … F(m-1)`` then ``B0 … B(m-1)``."""
    p = validate.positive_int(num_stages, "num_stages")
    m = validate.positive_int(num_micro, "num_micro (micro-batches)")
    return [[("F", i) for i in range(m)] + [("B", i) for i in range(m)] for _ in range(p)]


def one_f_one_b_schedule(num_stages: int, num_micro: int) -> list[list[Op]]:
    """The 1F1B schedule: a list of operations per stage.

    Per stage: ``min(p - s - 1, m)`` warm-up forwards, then alternate F and B, then the rest of B.
    """
    p = validate.positive_int(num_stages, "num_stages")
    m = validate.positive_int(num_micro, "num_micro (micro-batches)")
    out = []
    for s in range(p):
        warmup = min(p - s - 1, m)
        ops: list[Op] = [("F", i) for i in range(warmup)]
        for i in range(m - warmup):
            ops += [("F", warmup + i), ("B", i)]
        ops += [("B", i) for i in range(m - warmup, m)]
        out.append(ops)
    return out


def schedule(name: str, num_stages: int, num_micro: int) -> list[list[Op]]:
    """The schedule called ``name`` (``"gpipe"`` or ``"1f1b"``)."""
    if name == "gpipe":
        return gpipe_schedule(num_stages, num_micro)
    if name == "1f1b":
        return one_f_one_b_schedule(num_stages, num_micro)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {name!r}")


def bubble_fraction(num_stages: int, num_micro: int) -> float:
    """The idle share of a GPipe / 1F1B pipeline: ``(p - 1) / (m + p - 1)``."""
    p = validate.positive_int(num_stages, "num_stages")
    m = validate.positive_int(num_micro, "num_micro (micro-batches)")
    return (p - 1) / (m + p - 1)


@dataclass
class Timeline:
    """A simulated run: every op's ``(stage, kind, micro, start, end)`` and summary figures."""

    ops: list[tuple[int, str, int, float, float]] = field(default_factory=list)
    num_stages: int = 0

    @property
    def makespan(self) -> float:
        return max(end for *_, end in self.ops)

    @property
    def bubble(self) -> float:
        """Idle share of stage-time: ``1 - busy / (p · makespan)``."""
        busy = sum(end - start for *_, start, end in self.ops)
        return 1 - busy / (self.num_stages * self.makespan)

    def peak_activations(self) -> list[int]:
        """Per stage, the most micro-batches whose activations are held at once.

        A micro-batch's activations are held from its F until its B.
        """
        peaks = []
        for s in range(self.num_stages):
            held = peak = 0
            for _, kind, _, _, _ in sorted((o for o in self.ops if o[0] == s), key=lambda o: o[3]):
                held += 1 if kind == "F" else -1
                peak = max(peak, held)
            peaks.append(peak)
        return peaks


def simulate(
    ops_per_stage: list[list[Op]], t_forward: float = 1.0, t_backward: float = 2.0
) -> Timeline:
    """Run a schedule on an idealised machine (no communication cost) and time every op.

    ``F(s, i)`` waits for ``F(s-1, i)``; ``B(s, i)`` waits for ``B(s+1, i)`` (the last stage: its
    own ``F(s, i)``); each stage runs its ops in the given order. Raises ``ValueError`` if the
    schedule deadlocks.
    """
    if not (t_forward > 0 and t_backward > 0):
        raise ValueError(
            f"t_forward and t_backward must be positive, got {t_forward}, {t_backward}"
        )
    p = len(ops_per_stage)
    done: dict[tuple[int, str, int], float] = {}
    nxt, free = [0] * p, [0.0] * p
    timeline = Timeline(num_stages=p)
    remaining = sum(len(ops) for ops in ops_per_stage)
    while remaining:
        progressed = False
        for s in range(p):
            if nxt[s] == len(ops_per_stage[s]):
                continue
            kind, i = ops_per_stage[s][nxt[s]]
            if kind == "F":
                dep = (s - 1, "F", i) if s > 0 else None
            elif kind == "B":
                dep = (s + 1, "B", i) if s < p - 1 else (s, "F", i)
            else:
                raise ValueError(f"op kind must be 'F' or 'B', got {kind!r}")
            if dep is not None and dep not in done:
                continue
            start = max(free[s], done[dep] if dep else 0.0)
            end = start + (t_forward if kind == "F" else t_backward)
            done[(s, kind, i)] = free[s] = end
            timeline.ops.append((s, kind, i, start, end))
            nxt[s] += 1
            remaining -= 1
            progressed = True
        if not progressed:
            raise ValueError(f"schedule deadlocks: stages wait on each other at ops {nxt}")
    return timeline


def plot_timeline(timeline: Timeline, ax=None, title: str = ""):
    """Gantt chart of a :class:`Timeline`: one row per stage, forward blue, backward orange."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(8, 0.5 + 0.5 * timeline.num_stages))[1]
    colours = {"F": "tab:blue", "B": "tab:orange"}
    for s, kind, i, start, end in timeline.ops:
        ax.broken_barh(
            [(start, end - start)], (s - 0.4, 0.8), facecolors=colours[kind], edgecolor="white"
        )
        ax.text(
            (start + end) / 2, s, f"{kind}{i}", ha="center", va="center", fontsize=7, color="white"
        )
    ax.set_yticks(range(timeline.num_stages), [f"stage {s}" for s in range(timeline.num_stages)])
    ax.invert_yaxis()
    ax.set_xlabel("time (units of one forward)")
    ax.set_title(title or f"bubble {timeline.bubble:.0%}")
    ax.legend(
        handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()],
        labels=["forward", "backward"],
        loc="lower right",
        fontsize=8,
    )
    return ax


def pipeline_step(
    stage: nn.Module,
    x: torch.Tensor | None,
    y: torch.Tensor | None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    num_micro: int,
    activation_shape: tuple[int, ...],
    schedule_name: str = "1f1b",
    dtype: torch.dtype | None = None,
) -> float:
    """Forward and backward of one batch through a pipeline; rank ``s`` runs ``stage`` ``s``.

    ``x`` ``(batch, …)`` is read on the first rank, ``y`` on the last; both are split into
    ``num_micro`` micro-batches. ``activation_shape`` is the shape of one micro-batch's
    activation between stages (all boundaries alike). Received activations and gradients live
    on the device of ``stage``'s parameters, in ``dtype`` (default: their dtype), so the same
    code runs on CPU (gloo) and GPU (NCCL). Gradients accumulate in ``stage``'s parameters as
    for the mean loss over the whole batch; returns that loss on every rank.
    """
    p, s = dist.get_world_size(), dist.get_rank()
    m = validate.positive_int(num_micro, "num_micro (micro-batches)")
    ops = schedule(schedule_name, p, m)[s]
    weight = next(stage.parameters(), None)
    if weight is None:
        raise ValueError("stage has no parameters: a pipeline stage must have weights to train")
    device, dtype = weight.device, dtype or weight.dtype
    first, last = s == 0, s == p - 1
    if first:
        validate.tensor(x, "x")
        if x.shape[0] % m:
            raise ValueError(
                f"num_micro {m} must divide the batch size, got x of shape {tuple(x.shape)}"
            )
        x_mb = x.chunk(m)
    if last:
        validate.tensor(y, "y")
        if y.shape[0] % m:
            raise ValueError(
                f"num_micro {m} must divide the batch size, got y of shape {tuple(y.shape)}"
            )
        y_mb = y.chunk(m)
    inputs: dict[int, torch.Tensor] = {}
    outputs: dict[int, torch.Tensor] = {}
    sends = []  # (request, tensor): keep tensors alive until their isend completes
    total = torch.zeros(
        (), device=device, dtype=torch.float64
    )  # the loss, summed over micro-batches
    for kind, i in ops:
        if kind == "F":
            if first:
                inp = x_mb[i]
            else:
                inp = torch.empty(activation_shape, device=device, dtype=dtype)
                dist.recv(inp, s - 1)
                inp.requires_grad_()
            out = stage(inp)
            if last:
                out = loss_fn(out, y_mb[i]) / m  # mean over micro-batches = mean over the batch
                total += out.detach()
            else:
                t = out.detach().contiguous()
                sends.append((dist.isend(t, s + 1), t))
            inputs[i], outputs[i] = inp, out
        else:
            out = outputs.pop(i)
            if last:
                out.backward()
            else:
                grad = torch.empty_like(out)
                dist.recv(grad, s + 1)
                out.backward(grad)
            inp = inputs.pop(i)  # activations of micro-batch i are freed here
            if not first:
                g = inp.grad.contiguous()
                sends.append((dist.isend(g, s - 1), g))
    for request, _ in sends:
        request.wait()
    dist.broadcast(total, p - 1)
    return total.item()
