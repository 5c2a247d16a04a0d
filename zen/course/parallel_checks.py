"""Checks for the chapter-14 labs: run a student's distributed code in real processes.

Each check starts a process group with :func:`zen.parallel.launch`, runs the student's
function on every rank with small fixed inputs and compares with an independent reference
(``dist.all_reduce``, one process, ``nn.Linear``). Like :mod:`zen.course.labcheck` it records a
pass (``✓ … passed``) or raises :class:`zen.course.labcheck.LabCheckFailed` naming the world size,
the rank and what differs, with a hint. An unfilled TODO, an exception on any rank (its traceback
without zen's frames), an invalid peer rank, a deadlock and an endless computation (told apart
after ``timeout`` seconds by what each rank was doing) are reported instead of hanging the
notebook. The ring check records every rank's point-to-point traffic, bans collectives under
any import path, and checks the traffic is a ring's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from zen.course.labcheck import LabCheckFailed, difference, passed
from zen.parallel.launch import TRANSPORT_ERRORS, launch

_COLLECTIVES = (
    "all_reduce",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "reduce_scatter_single",
    "all_reduce_coalesced",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_single",
    "all_gather_tensor",
    "all_gather_object",
    "broadcast",
    "broadcast_object_list",
    "reduce",
    "all_to_all",
    "all_to_all_single",
    "scatter",
    "gather",
)
_P2P = ("send", "recv", "isend", "irecv")
_COMPUTING, _FINISHED, _STARTING = (
    0,
    -1,
    -3,
)  # a rank's state; k > 0: waiting for rank k - 1; -2: inside a collective


def _fail(name: str, what: str, hint: str) -> None:
    __tracebackhide__ = True
    raise LabCheckFailed(f"✗ {name}: {what}\n  hint: {hint}") from None


def _student_traceback(text: str) -> str:
    """A worker's traceback with zen's, torch's and multiprocessing's frames left out."""
    lines = [line for line in text.strip().splitlines() if line and not line.startswith("(ranks ")]
    kept, skip = [], False
    for line in lines[1:-1]:
        if line.startswith("  File "):
            skip = any(
                part in line
                for part in ("/zen/", "/torch/", "/multiprocessing/", "/site-packages/")
            )
        if not skip:
            kept.append(line)
    return "\n".join(["Traceback (your code only):", *kept, lines[-1]]) if kept else lines[-1]


class _Work:
    """An ``isend``/``irecv`` request whose ``wait`` marks the rank as waiting for ``peer``."""

    def __init__(self, work: Any, state: Any, rank: int, peer: int) -> None:
        self.work, self.state, self.rank, self.peer = work, state, rank, peer

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        self.state[self.rank] = self.peer + 1
        result = self.work.wait(
            *args, **kwargs
        )  # a wait that times out leaves the rank marked as waiting
        self.state[self.rank] = _COMPUTING
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.work, name)


def _instrument(
    state: Any, namespaces: list[dict], ban_collectives: bool
) -> list[tuple[str, int, int]]:
    """Record this rank's point-to-point traffic, check peers, mark waits; ban or mark collectives.

    Every reference to the original functions in ``torch.distributed.*`` modules and in
    ``namespaces`` (the student's globals) is replaced, whatever the import path.
    Returns the traffic log: ``(kind, peer, elements)`` per message, with peer -1 for a
    collective (recorded when collectives are allowed).
    """
    import sys

    r, p = dist.get_rank(), dist.get_world_size()
    log: list[tuple[str, int, int]] = []
    replace: dict[int, Any] = {}
    depth = [0]  # torch's own send calls isend: only the outermost call is the student's

    def p2p(kind: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if depth[0]:
                return original(*args, **kwargs)
            depth[0] += 1
            try:
                return outer(*args, **kwargs)
            finally:
                depth[0] -= 1

        def outer(*args: Any, **kwargs: Any) -> Any:
            tensor = args[0] if args else kwargs.get("tensor")
            peer = args[1] if len(args) > 1 else kwargs.get("dst", kwargs.get("src"))
            if peer is None or not (isinstance(peer, int) and 0 <= peer < p) or peer == r:
                raise ValueError(
                    f"invalid rank: rank {r} called dist.{kind} with peer {peer!r}, but the peers "
                    f"of rank {r} are the other ranks 0 … {p - 1}"
                )
            log.append((kind, peer, tensor.numel()))
            if kind in ("isend", "irecv"):
                return _Work(original(*args, **kwargs), state, r, peer)
            state[r] = peer + 1
            result = original(*args, **kwargs)
            state[r] = _COMPUTING
            return result

        return wrapper

    def collective(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if depth[0]:
                return original(*args, **kwargs)
            if ban_collectives:
                raise AssertionError(
                    f"only point-to-point messages (dist.send/recv/isend/irecv) are allowed, "
                    f"not the collective {name}"
                )
            tensor = args[0] if args else next(iter(kwargs.values()), None)
            log.append((name, -1, tensor.numel() if isinstance(tensor, torch.Tensor) else 0))
            state[r], depth[0] = -2, depth[0] + 1
            try:
                result = original(*args, **kwargs)
            finally:
                depth[0] -= 1
            state[r] = _COMPUTING
            return result

        return wrapper

    modules = [
        m
        for n, m in list(sys.modules.items())
        if n.startswith("torch.distributed") and m is not None
    ]
    for module in modules:
        for name in _P2P + _COLLECTIVES:
            original = vars(module).get(name)
            if callable(original) and id(original) not in replace:
                replace[id(original)] = (
                    p2p(name, original) if name in _P2P else collective(name, original)
                )
    for namespace in [vars(m) for m in modules] + namespaces:
        for key, value in list(namespace.items()):
            if id(value) in replace:
                namespace[key] = replace[id(value)]
    state[r] = _COMPUTING
    return log


def _stalled(name: str, world_size: int, state: Any, timeout: float, hint: str) -> None:
    """Fail with what the ranks were doing when time ran out.

    Starting, computing, or waiting (a deadlock).
    """
    __tracebackhide__ = True
    starting = [k for k in range(world_size) if state[k] == _STARTING]
    if starting:
        _fail(
            name,
            f"with {world_size} processes ranks {starting} had not started after {timeout:g} s",
            "the machine is busy: run the check again, or pass a longer timeout",
        )
    busy = [k for k in range(world_size) if state[k] == _COMPUTING]
    if busy:
        _fail(
            name,
            f"with {world_size} processes rank {busy[0]} was still computing after {timeout:g} s: "
            "an endless loop?",
            "look for a loop whose condition never changes",
        )
    waits = ", ".join(
        f"rank {k} waits for rank {state[k] - 1}"
        if state[k] > 0
        else f"rank {k} waits in a collective"
        for k in range(world_size)
        if state[k] != _FINISHED
    )
    _fail(
        name, f"with {world_size} processes your code deadlocked: {waits}, and nobody sends", hint
    )


def _run(
    fn: Callable[..., Any], world_size: int, *args: Any, name: str, timeout: float, hint: str
) -> list[Any]:
    """``launch`` that turns a worker's failure into lab feedback.

    A TODO, an error, an invalid rank, a deadlock (every unfinished rank waits for a message) or
    an endless computation.
    """
    __tracebackhide__ = True
    import multiprocessing as mp

    if torch.cuda.is_initialized():  # forked workers cannot use CUDA: not the student's fault
        _fail(
            name,
            "this kernel has already used the GPU (CUDA), so it cannot fork the lab's CPU "
            "worker processes; your code was not run",
            "restart the kernel (Kernel → Restart) and run the lab from the top without "
            "moving anything to the GPU before this check",
        )
    state = mp.get_context("fork").Array("i", [_STARTING] * world_size, lock=False)
    try:
        return launch(fn, world_size, state, *args, timeout=timeout)
    except TimeoutError:
        _stalled(name, world_size, state, timeout, hint)
    except RuntimeError as err:
        text = str(err)
        if "NotImplementedError" in text:
            _fail(
                name,
                "not implemented yet",
                "replace the `raise NotImplementedError` line with your code",
            )
        if "only point-to-point" in text:
            _fail(
                name,
                "a collective was called",
                "use only point-to-point messages (dist.send/recv/isend/irecv)",
            )
        waiting = any(state[k] > 0 or state[k] == -2 for k in range(world_size))
        if waiting and any(e in text for e in TRANSPORT_ERRORS):
            # gloo's own timeout fired first on one rank, and its peer saw the connection close
            _stalled(name, world_size, state, timeout, hint)
        rank = text.split(" of ")[0] if text.startswith("rank ") else "a rank"
        tb = text.split("failed:\n", 1)[-1]
        invalid = re.search(r"^ValueError: invalid rank: (.*)$", tb, re.M)
        if invalid:
            _fail(
                name,
                f"with {world_size} processes {invalid.group(1)}",
                "ranks go from 0 to world_size - 1: wrap neighbours around with % p",
            )
        _fail(
            name,
            f"with {world_size} processes {rank} raised an error:\n{_student_traceback(tb)}",
            hint,
        )


def _compare(
    got: torch.Tensor, expected: torch.Tensor, what: str, atol: float = 1e-5
) -> str | None:
    """``None`` if equal within ``atol`` (and ``1e-4`` relative), else a sentence naming the first
    difference: the lab checks' one comparison rule, :func:`zen.course.labcheck.difference`."""
    found = difference(got, expected, atol=atol, rtol=1e-4)
    return None if found is None else f"{what}: {found[0]}"


# ------------------------------------------------------------------------------ lab (a)


def _ring_worker(
    state: Any, fn: Callable[[torch.Tensor], torch.Tensor], n: int
) -> tuple[torch.Tensor, torch.Tensor, list]:
    g = torch.Generator().manual_seed(100 + dist.get_rank())
    x = torch.randn(n, generator=g)
    expected = x.clone()
    dist.all_reduce(expected)
    log = _instrument(state, [getattr(fn, "__globals__", {})], ban_collectives=True)
    got = fn(x)
    state[dist.get_rank()] = _FINISHED
    return got if got is not None else x, expected, log


def _ring_traffic_problem(log: list[tuple[str, int, int]], rank: int, p: int, n: int) -> str | None:
    """Why ``log`` is not a ring all-reduce's traffic: neighbours only, 2(p−1)/p·n each way."""
    right, left = (rank + 1) % p, (rank - 1) % p
    sent = sum(k for kind, _, k in log if kind in ("send", "isend"))
    received = sum(k for kind, _, k in log if kind in ("recv", "irecv"))
    for kind, peer, _ in log:
        if kind in ("send", "isend") and peer != right:
            return (
                f"rank {rank} sent to rank {peer}; "
                f"in a ring it sends only to its right neighbour {right}"
            )
        if kind in ("recv", "irecv") and peer != left:
            return (
                f"rank {rank} received from rank {peer}; "
                f"in a ring it receives only from its left neighbour {left}"
            )
    want = 2 * (p - 1) * n // p
    if sent != want or received != want:
        return (
            f"rank {rank} sent {sent} and received {received} elements; "
            f"a ring all-reduce of {n} elements "
            f"moves 2(p−1)/p·n = {want} each way"
        )
    return None


def check_ring_all_reduce(
    fn: Callable[[torch.Tensor], torch.Tensor],
    world_sizes: tuple[int, ...] = (2, 3, 4),
    n: int = 12,
    timeout: float = 30.0,
) -> None:
    """``fn(t)`` must sum ``t`` over ranks in place (and return it) with ring traffic.

    Ring traffic: send/recv to neighbours only. ``n`` must be a multiple of every world size
    (so each rank moves exactly 2(p−1)/p·n elements).
    """
    if any(n % p for p in world_sizes):
        raise ValueError(f"n must be a multiple of every world size {world_sizes}, got n={n}")
    name = "ring all-reduce"
    for p in world_sizes:
        results = _run(
            _ring_worker,
            p,
            fn,
            n,
            name=name,
            timeout=timeout,
            hint="start each send with dist.isend, then dist.recv, then wait() for the send",
        )
        for rank, (got, expected, _) in enumerate(results):
            problem = _compare(got, expected, f"with {p} processes, rank {rank}")
            if problem:
                _fail(
                    name,
                    f"{problem} (expected the sum over ranks)",
                    "after the reduce-scatter phase each rank owns one fully summed chunk; "
                    "the all-gather phase "
                    "must copy received chunks, not add them",
                )
        for rank, (_, _, log) in enumerate(results):
            problem = _ring_traffic_problem(log, rank, p, n)
            if problem:
                _fail(
                    name,
                    f"with {p} processes {problem}",
                    "send one chunk of n/p elements per step, "
                    "p−1 steps to reduce and p−1 steps to gather",
                )
    passed(
        name,
        f"on {', '.join(map(str, world_sizes))} processes, "
        "neighbours only, 2(p−1)/p·n elements per rank",
    )


def _dp_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def _dp_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(12, 5, generator=g), torch.randint(0, 3, (12,), generator=g)


def _dp_worker(
    state: Any, fn: Callable[..., float], steps: int
) -> tuple[list[float], list[torch.Tensor]]:
    r, p = dist.get_rank(), dist.get_world_size()
    _instrument(state, [getattr(fn, "__globals__", {})], ban_collectives=False)
    model = _dp_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = _dp_data()
    xs, ys = x.chunk(p)[r], y.chunk(p)[r]
    losses = [float(fn(model, opt, xs, ys)) for _ in range(steps)]
    state[r] = _FINISHED
    return losses, [q.detach().clone() for q in model.parameters()]


def check_data_parallel_step(
    fn: Callable[..., float],
    world_sizes: tuple[int, ...] = (2, 4),
    steps: int = 2,
    timeout: float = 30.0,
) -> None:
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
        results = _run(
            _dp_worker,
            p,
            fn,
            steps,
            name=name,
            timeout=timeout,
            hint="every rank must take part in the same all-reduces, in the same order",
        )
        for rank, (_, params) in enumerate(results):
            for param, got, expected in zip(names, params, model.parameters()):
                problem = _compare(
                    got, expected.detach(), f"with {p} processes, rank {rank}, parameter {param}"
                )
                if problem:
                    _fail(
                        name,
                        f"{problem} (expected: one process trained on the whole batch)",
                        "zero the gradients, all-reduce them, "
                        "divide by the number of processes, then step",
                    )
    passed(
        name,
        "equal to one process on the global batch "
        f"with {', '.join(map(str, world_sizes))} processes",
    )


# ------------------------------------------------------------------------------ lab (b)


def _tp_worker(state: Any, cls: type, kind: str, d_in: int, d_out: int) -> dict[str, Any]:
    from zen.course.labcheck import _watch_calls
    from zen.parallel import tensor_parallel

    r, p = dist.get_rank(), dist.get_world_size()
    log = _instrument(state, [], ban_collectives=False)
    library = {
        "zen.parallel.tensor_parallel.ColumnParallelLinear": tensor_parallel.ColumnParallelLinear,
        "zen.parallel.tensor_parallel.RowParallelLinear": tensor_parallel.RowParallelLinear,
    }
    torch.manual_seed(0)
    linear = nn.Linear(d_in, d_out)
    x = torch.randn(3, d_in, generator=torch.Generator().manual_seed(1)).requires_grad_()
    inp = x if kind == "column" else x.chunk(p, dim=-1)[r].detach().requires_grad_()
    with _watch_calls(library) as seen:
        layer = cls(linear, p, r)
        y = layer(inp)
    out: dict[str, Any] = {"y": y.detach().clone(), "seen": list(seen)}
    out["parameters"] = sum(q.numel() for q in layer.parameters())
    out["forward"] = [kind for kind, _, _ in log]
    if kind == "column":
        # the rest of the network sees the full output: gather it to compute one loss
        parts = [torch.empty_like(y) for _ in range(p)]
        dist.all_gather(parts, y.detach().contiguous())
        full = torch.cat(parts, dim=-1)
        grad_full = 2 * full  # d/dy of sum(y**2)
        start = len(log)
        y.backward(grad_full.chunk(p, dim=-1)[r])
    else:
        start = len(log)
        y.square().sum().backward()
    out["backward"] = [kind for kind, _, _ in log[start:]]
    out["x_grad"] = inp.grad
    weight = getattr(layer, "weight", None)
    out["w_grad"] = weight.grad if isinstance(weight, torch.Tensor) else None
    state[r] = _FINISHED
    return out


def _tp_problem(out: dict[str, Any], kind: str, p: int, d_in: int, d_out: int) -> str | None:
    """Why a rank's layer is not a real shard: a library shortcut, a full copy of the weights,
    or the wrong communication (column: one all-reduce in backward; row: one in forward)."""
    if out["seen"]:
        return f"this check wants your own implementation, not {out['seen'][0]}"
    shard = d_out // p * d_in + d_out // p if kind == "column" else d_out * d_in // p + d_out
    if out["parameters"] != shard:
        return (
            f"with {p} processes a rank's layer holds {out['parameters']} parameters; its "
            f"{kind}-parallel shard of nn.Linear({d_in}, {d_out}) holds {shard}"
        )
    want = {"column": ([], ["all_reduce"]), "row": (["all_reduce"], [])}[kind]
    got = (out["forward"], out["backward"])
    if got != want:

        def said(calls: list[str]) -> str:
            return ", ".join(f"dist.{c}" for c in calls) or "no collective"

        return (
            f"with {p} processes a rank called {said(got[0])} in forward and {said(got[1])} in "
            f"backward; a {kind}-parallel layer needs {said(want[0])} in forward and "
            f"{said(want[1])} in backward"
        )
    return None


def check_parallel_linear(
    cls: type,
    kind: str,
    world_sizes: tuple[int, ...] = (2, 4),
    d_in: int = 8,
    d_out: int = 12,
    timeout: float = 30.0,
) -> None:
    """``cls(linear, world_size, rank)`` must be the ``kind`` slice of ``linear``.

    ``kind`` is ``"column"`` or ``"row"``. Checks the output, the input gradient and the weight
    gradient against ``linear`` on one process, for the loss ``sum(y²)`` of the full output.
    """
    if not isinstance(cls, type):
        _fail(
            f"{kind}-parallel linear",
            f"expected a class, got {type(cls).__name__}",
            "pass the class itself, not an instance",
        )
    if kind not in ("column", "row"):
        raise ValueError(f"kind must be 'column' or 'row', got {kind!r}")
    torch.manual_seed(0)
    linear = nn.Linear(d_in, d_out)
    x = torch.randn(3, d_in, generator=torch.Generator().manual_seed(1)).requires_grad_()
    y = linear(x)
    y.square().sum().backward()
    hints = {
        "column": "keep rows rank*d_out/p … of linear.weight (nn.Linear stores (d_out, d_in)) "
        "and their bias; "
        "pass the input through copy_to_parallel so its gradient is all-reduced in backward",
        "row": "keep columns rank*d_in/p … of linear.weight; all-reduce with reduce_from_parallel "
        "and add the bias once, after the sum",
    }
    name = f"{kind}-parallel linear"
    for p in world_sizes:
        for rank, out in enumerate(
            _run(
                _tp_worker, p, cls, kind, d_in, d_out, name=name, timeout=timeout, hint=hints[kind]
            )
        ):
            problem = _tp_problem(out, kind, p, d_in, d_out)
            if problem:
                _fail(name, problem, hints[kind])
            if kind == "column":
                want_y, want_x = y.detach().chunk(p, dim=-1)[rank], x.grad
                want_w = linear.weight.grad.chunk(p, dim=0)[rank]
            else:
                want_y, want_x = y.detach(), x.grad.chunk(p, dim=-1)[rank]
                want_w = linear.weight.grad.chunk(p, dim=1)[rank]
            for what, got, want in (
                ("output", out["y"], want_y),
                ("input gradient", out["x_grad"], want_x),
                ("weight gradient", out["w_grad"], want_w),
            ):
                where = f"with {p} processes, rank {rank}, {what}"
                problem = _compare(got, want, where) if got is not None else f"{where} is None"
                if problem:
                    _fail(name, problem, hints[kind])
    passed(
        name,
        f"output and gradients equal nn.Linear with {', '.join(map(str, world_sizes))} processes",
    )
