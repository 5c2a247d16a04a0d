"""Checks for the chapter-14 labs: run a student's distributed code in real processes.

Each check starts a process group with :func:`zen.parallel.launch`, runs the student's
function on every rank with small fixed inputs and compares with an independent reference
(``dist.all_reduce``, one process, ``nn.Linear``). Like :mod:`zen.course.labcheck` it prints
``✓ … passed`` or raises :class:`zen.course.labcheck.LabCheckFailed` naming the world size, the rank
and what differs, with a hint. An unfilled TODO, an exception on any rank and a deadlock
(after ``timeout`` seconds) are reported the same way instead of hanging the notebook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zen.course.labcheck import LabCheckFailed
from zen.parallel.launch import launch

_COLLECTIVES = ("all_reduce", "reduce_scatter", "reduce_scatter_tensor", "reduce_scatter_single",
                "all_gather", "all_gather_into_tensor", "all_gather_single", "broadcast", "reduce")


def _fail(name: str, what: str, hint: str) -> None:
    __tracebackhide__ = True
    raise LabCheckFailed(f"✗ {name}: {what}\n  hint: {hint}") from None


def _run(fn: Callable[..., Any], world_size: int, *args: Any, name: str, timeout: float, hint: str) -> list[Any]:
    """``launch`` that turns a worker's failure into lab feedback."""
    __tracebackhide__ = True
    try:
        return launch(fn, world_size, *args, timeout=timeout)
    except TimeoutError:
        _fail(name, f"with {world_size} processes your code did not finish within {timeout} s: probably a "
                    "deadlock (every rank waiting for a message nobody sends)", hint)
    except RuntimeError as err:
        text = str(err)
        if "NotImplementedError" in text:
            _fail(name, "not implemented yet", "replace the `raise NotImplementedError` line with your code")
        if "only point-to-point" in text:
            _fail(name, "a collective was called", "use only point-to-point messages (dist.send/recv/isend/irecv)")
        last = [line for line in text.splitlines() if line and not line.startswith(" ")]
        _fail(name, f"with {world_size} processes your code raised an error: {last[-1] if last else text}\n{text}", hint)


def _compare(got: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-5) -> str | None:
    """``None`` if equal within ``atol``, else a sentence naming the first difference."""
    if not isinstance(got, torch.Tensor):
        return f"{what}: expected a tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"{what}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    if not torch.isfinite(got).all():
        return f"{what}: contains NaN or inf"
    bad = (got - expected).abs() > atol + 1e-4 * expected.abs()
    if bad.any():
        i = tuple(int(k) for k in bad.nonzero()[0])
        return f"{what}: at index {i} expected {expected[i].item():.5g}, got {got[i].item():.5g}"
    return None


# ------------------------------------------------------------------------------ lab (a)


def _ring_worker(fn: Callable[[torch.Tensor], torch.Tensor], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + dist.get_rank())
    x = torch.randn(n, generator=g)
    expected = x.clone()
    dist.all_reduce(expected)
    saved = {name: getattr(dist, name) for name in _COLLECTIVES if hasattr(dist, name)}

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("use only point-to-point messages (dist.send/recv/isend/irecv), not collectives")

    try:
        for name in saved:
            setattr(dist, name, forbidden)
        got = fn(x)
    finally:
        for name, f in saved.items():
            setattr(dist, name, f)
    return got if got is not None else x, expected


def check_ring_all_reduce(fn: Callable[[torch.Tensor], torch.Tensor], world_sizes: tuple[int, ...] = (2, 3, 4),
                          n: int = 10, timeout: float = 30.0) -> None:
    """``fn(t)`` must sum ``t`` over ranks in place (and return it) using only send/recv."""
    name = "ring all-reduce"
    for p in world_sizes:
        results = _run(_ring_worker, p, fn, n, name=name, timeout=timeout,
                       hint="start each send with dist.isend, then dist.recv, then wait() for the send")
        for rank, (got, expected) in enumerate(results):
            problem = _compare(got, expected, f"with {p} processes, rank {rank}")
            if problem:
                _fail(name, f"{problem} (expected the sum over ranks)",
                      "after p-1 reduce-scatter steps rank r owns chunk (r+1) % p; the all-gather phase "
                      "must copy received chunks, not add them")
    print(f"✓ {name}: passed on {', '.join(map(str, world_sizes))} processes, using only send/recv")


def _dp_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def _dp_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(12, 5, generator=g), torch.randint(0, 3, (12,), generator=g)


def _dp_worker(fn: Callable[..., float], steps: int) -> tuple[list[float], list[torch.Tensor]]:
    r, p = dist.get_rank(), dist.get_world_size()
    model = _dp_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = _dp_data()
    xs, ys = x.chunk(p)[r], y.chunk(p)[r]
    losses = [float(fn(model, opt, xs, ys)) for _ in range(steps)]
    return losses, [q.detach().clone() for q in model.parameters()]


def check_data_parallel_step(fn: Callable[..., float], world_sizes: tuple[int, ...] = (2, 4),
                             steps: int = 2, timeout: float = 30.0) -> None:
    """``fn(model, optimizer, x, y)`` must make one data-parallel SGD step (cross-entropy).

    After ``steps`` steps every rank's parameters must equal one process training on the
    global batch.
    """
    model, (x, y) = _dp_model(), _dp_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    names = [name for name, _ in model.named_parameters()]
    name = "data-parallel step"
    for p in world_sizes:
        results = _run(_dp_worker, p, fn, steps, name=name, timeout=timeout,
                       hint="every rank must take part in the same all-reduces, in the same order")
        for rank, (_, params) in enumerate(results):
            for param, got, expected in zip(names, params, model.parameters()):
                problem = _compare(got, expected.detach(), f"with {p} processes, rank {rank}, parameter {param}")
                if problem:
                    _fail(name, f"{problem} (expected: one process trained on the whole batch)",
                          "zero the gradients, all-reduce them, divide by the number of processes, then step")
    print(f"✓ {name}: passed — equal to one process on the global batch with {', '.join(map(str, world_sizes))} processes")


# ------------------------------------------------------------------------------ lab (b)


def _tp_worker(cls: type, kind: str, d_in: int, d_out: int) -> dict[str, Any]:
    r, p = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    linear = nn.Linear(d_in, d_out)
    x = torch.randn(3, d_in, generator=torch.Generator().manual_seed(1)).requires_grad_()
    layer = cls(linear, p, r)
    inp = x if kind == "column" else x.chunk(p, dim=-1)[r].detach().requires_grad_()
    y = layer(inp)
    out = {"y": y.detach().clone()}
    if kind == "column":
        # the rest of the network sees the full output: gather it to compute one loss
        parts = [torch.empty_like(y) for _ in range(p)]
        dist.all_gather(parts, y.detach().contiguous())
        full = torch.cat(parts, dim=-1)
        grad_full = 2 * full  # d/dy of sum(y**2)
        y.backward(grad_full.chunk(p, dim=-1)[r])
    else:
        y.square().sum().backward()
    out["x_grad"] = inp.grad
    out["w_grad"] = layer.weight.grad
    return out


def check_parallel_linear(cls: type, kind: str, world_sizes: tuple[int, ...] = (2, 4),
                          d_in: int = 8, d_out: int = 12, timeout: float = 30.0) -> None:
    """``cls(linear, world_size, rank)`` must be the ``kind`` (``"column"`` or ``"row"``) slice of ``linear``.

    Checks the output, the input gradient and the weight gradient against ``linear`` on one
    process, for the loss ``sum(y²)`` of the full output.
    """
    if kind not in ("column", "row"):
        raise ValueError(f"kind must be 'column' or 'row', got {kind!r}")
    torch.manual_seed(0)
    linear = nn.Linear(d_in, d_out)
    x = torch.randn(3, d_in, generator=torch.Generator().manual_seed(1)).requires_grad_()
    y = linear(x)
    y.square().sum().backward()
    hints = {
        "column": "keep rows rank*d_out/p … of linear.weight (nn.Linear stores (d_out, d_in)) and their bias; "
                  "pass the input through copy_to_parallel so its gradient is all-reduced in backward",
        "row": "keep columns rank*d_in/p … of linear.weight; all-reduce with reduce_from_parallel "
               "and add the bias once, after the sum",
    }
    name = f"{kind}-parallel linear"
    for p in world_sizes:
        for rank, out in enumerate(_run(_tp_worker, p, cls, kind, d_in, d_out, name=name, timeout=timeout, hint=hints[kind])):
            if kind == "column":
                want_y, want_x = y.detach().chunk(p, dim=-1)[rank], x.grad
                want_w = linear.weight.grad.chunk(p, dim=0)[rank]
            else:
                want_y, want_x = y.detach(), x.grad.chunk(p, dim=-1)[rank]
                want_w = linear.weight.grad.chunk(p, dim=1)[rank]
            for what, got, want in (("output", out["y"], want_y), ("input gradient", out["x_grad"], want_x),
                                    ("weight gradient", out["w_grad"], want_w)):
                where = f"with {p} processes, rank {rank}, {what}"
                problem = _compare(got, want, where) if got is not None else f"{where} is None"
                if problem:
                    _fail(name, problem, hints[kind])
    print(f"✓ {name}: passed — output and gradients equal nn.Linear with {', '.join(map(str, world_sizes))} processes")
