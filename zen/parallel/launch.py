"""Starting a group of worker processes: from a notebook, from pytest, or under ``torchrun``.

A distributed program is the *same* function run by ``world_size`` processes that find one
another through a rendezvous and then talk through collectives. :func:`launch` starts them
from inside Python::

    def work(x):
        t = torch.tensor([float(dist.get_rank())])
        dist.all_reduce(t)                   # every rank now holds 0 + 1 + ... + (p-1)
        return t.item()

    launch(work, 4, x)                       # -> [6.0, 6.0, 6.0, 6.0], one result per rank

On Linux with the CPU backend (``gloo``) the workers are *forked*, so ``work`` may be a
function typed into a notebook cell: nothing is pickled on the way in, only the results on the
way out. With ``backend="nccl"`` (one GPU per process) CUDA forbids forking a process that has
already touched the GPU, so the workers are *spawned* and ``work`` must be importable (defined
in a module, not a notebook); on GPU lab machines prefer the ``torchrun`` entry point
(``python -m torchrun ... -m zen.parallel.train``) which uses :func:`init_from_env`.

The rendezvous is a file store in a fresh temporary folder (no TCP port to collide with when
several test workers run at once). Every wait has a timeout, so a wrong program fails with an
error naming the rank instead of hanging.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue as queue_module
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from zen import validate

#: how often launch starts a fresh process group when no rank could join the last one
_JOIN_ATTEMPTS = 3
_JOIN_FAILED = "could not join the process group:\n"


#: what gloo raises on a rank whose peer timed out or died: a consequence, not a cause
TRANSPORT_ERRORS = ("Timed out", "Connection closed by peer", "Connection reset")


class _JoinFailed(RuntimeError):
    """No rank got past ``init_process_group``: fn never ran, so a fresh group may be tried."""


BACKENDS = ("gloo", "nccl")


def _worker(
    rank: int,
    world_size: int,
    backend: str,
    store: str,
    fn: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    results: Any,
    timeout: float,
    threads: int,
) -> None:
    """Body of one worker: join the group, run ``fn``, send back ``(rank, ok, payload)``."""
    try:
        torch.set_num_threads(threads)  # p workers share the cores; avoid oversubscription
        os.environ["LOCAL_RANK"] = str(rank)
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        try:
            dist.init_process_group(
                backend,
                init_method=f"file://{store}",
                rank=rank,
                world_size=world_size,
                timeout=timedelta(seconds=timeout),
            )
        except Exception:  # fn never ran: the launcher may try a fresh group
            results.put((rank, False, _JOIN_FAILED + traceback.format_exc()))
            return
        try:
            value = fn(*args, **kwargs)
        finally:
            dist.destroy_process_group()
        results.put((rank, True, pickle.dumps(value)))  # plain pickle: no shared-memory handles
    except BaseException:  # noqa: BLE001 — every failure must reach the parent
        results.put((rank, False, traceback.format_exc()))


def launch(
    fn: Callable[..., Any],
    world_size: int,
    *args: Any,
    backend: str = "gloo",
    timeout: float = 60.0,
    threads: int = 1,
    start_method: str | None = None,
    **kwargs: Any,
) -> list[Any]:
    """Run ``fn(*args, **kwargs)`` in ``world_size`` processes joined in one process group.

    Inside ``fn``, ``dist.get_rank()`` and ``dist.get_world_size()`` tell each copy who it is.
    Returns the list of return values ordered by rank (they must be picklable; tensors are
    copied back). If any rank raises, the others are stopped and ``RuntimeError`` carries that
    rank's traceback; if the group does not finish within ``timeout`` seconds,
    ``TimeoutError``.

    ``threads`` is the number of intra-op threads per worker. ``start_method`` defaults to
    ``fork`` for ``gloo`` (works with notebook functions; forked workers compute on the CPU
    and must not use CUDA) and ``spawn`` for ``nccl``. Workers
    are daemonic: they cannot start processes of their own (use ``num_workers=0`` in a
    ``DataLoader`` inside ``fn``). Print nothing in ``fn``; return what you want to see.
    """
    validate.positive_int(world_size, "world_size")
    validate.positive_int(threads, "threads")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise RuntimeError("backend='nccl' needs CUDA GPUs; use backend='gloo' on CPU")
        if world_size > torch.cuda.device_count():
            raise ValueError(
                f"backend='nccl' runs one process per GPU: world_size={world_size} but only "
                f"{torch.cuda.device_count()} GPU(s) are visible"
            )
    method = start_method or ("spawn" if backend == "nccl" else "fork")
    if method == "fork" and backend == "nccl":
        raise ValueError(
            "backend='nccl' needs start_method='spawn': forked workers cannot use CUDA"
        )
    if method == "fork" and start_method is None and torch.cuda.is_initialized():
        # A process that has used CUDA runs autograd on helper threads, and forked children
        # cannot run backward passes. Spawned children can, if fn can be imported by name.
        try:
            pickle.dumps(fn)
        except Exception:
            raise RuntimeError(
                "this process has already used CUDA, so forked workers cannot run autograd, and "
                f"{getattr(fn, '__qualname__', fn)!r} cannot be sent to spawned workers "
                "(define it at module level in an importable file), "
                "or restart the kernel and launch before using CUDA"
            ) from None
        method = "spawn"
    ctx = mp.get_context(method)
    for attempt in range(_JOIN_ATTEMPTS):
        try:
            return _run_group(ctx, method, fn, world_size, backend, args, kwargs, timeout, threads)
        except _JoinFailed as err:
            # gloo's TCP mesh set-up fails now and then on a busy machine ("connectFullMesh
            # failed … Connection closed by peer") before fn has run anywhere: start a fresh group
            if attempt == _JOIN_ATTEMPTS - 1:
                raise RuntimeError(str(err)) from None
    raise AssertionError("unreachable")


def _run_group(
    ctx: Any,
    method: str,
    fn: Callable[..., Any],
    world_size: int,
    backend: str,
    args: tuple,
    kwargs: dict,
    timeout: float,
    threads: int,
) -> list[Any]:
    """One attempt of :func:`launch`: start the workers, collect their results, clean up."""
    folder = tempfile.mkdtemp(prefix="zen-rendezvous-")
    store = os.path.join(folder, "store")
    results = ctx.Queue()
    procs = [
        ctx.Process(
            target=_worker,
            args=(rank, world_size, backend, store, fn, args, kwargs, results, timeout, threads),
            daemon=True,
        )
        for rank in range(world_size)
    ]
    try:
        for p in procs:
            try:
                p.start()
            except (AttributeError, TypeError, pickle.PicklingError) as err:
                raise TypeError(
                    f"with start_method={method!r} the function and its arguments are pickled, "
                    "so fn must be defined at the top level of an importable module "
                    f"(not in a notebook or as a lambda): {err}"
                ) from err
        values: dict[int, Any] = {}
        errors: dict[int, str] = {}
        deadline = time.monotonic() + timeout
        grace = None  # after a first failure, wait briefly for the others' reports
        while len(values) + len(errors) < world_size:
            if grace is not None and time.monotonic() > grace:
                break
            try:
                rank, ok, payload = results.get(timeout=0.05)
            except queue_module.Empty:
                dead = [
                    r
                    for r, p in enumerate(procs)
                    if p.exitcode not in (None, 0) and r not in values and r not in errors
                ]
                if dead and not errors:
                    raise RuntimeError(
                        f"rank {dead[0]} died with exit code {procs[dead[0]].exitcode} "
                        "before reporting"
                    ) from None
                if time.monotonic() > deadline:
                    missing = sorted(set(range(world_size)) - set(values) - set(errors))
                    raise TimeoutError(
                        f"ranks {missing} did not finish within {timeout} s"
                    ) from None
                continue
            if ok:
                values[rank] = pickle.loads(payload)
            else:
                errors[rank] = payload
                grace = grace or time.monotonic() + 2.0
        if errors and all(e.startswith(_JOIN_FAILED) for e in errors.values()):
            raise _JoinFailed(_describe_failure(errors, world_size))
        if errors:
            raise RuntimeError(_describe_failure(errors, world_size))
        for p in procs:
            p.join(timeout=max(1.0, deadline - time.monotonic()))
        return [values[r] for r in range(world_size)]
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        results.close()
        shutil.rmtree(folder, ignore_errors=True)


def _describe_failure(errors: dict[int, str], world_size: int) -> str:
    """Name the rank that failed first.

    A peer's "connection closed" is a consequence, not a cause.
    """

    def secondary(tb: str) -> bool:
        return any(e in tb for e in TRANSPORT_ERRORS)

    order = sorted(errors, key=lambda r: (secondary(errors[r]), r))
    first = order[0]
    text = f"rank {first} of {world_size} failed:\n{errors[first]}"
    if len(order) > 1:
        text += f"\n(ranks {order[1:]} failed too, probably as a consequence)"
    return text


def init_from_env(backend: str | None = None) -> tuple[int, int, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment.

    ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
    ``MASTER_PORT`` for every process it starts. Returns ``(rank, world_size, device)``; the
    device is ``cuda:LOCAL_RANK`` with NCCL when GPUs are present, else ``cpu`` with gloo.
    """
    missing = [
        k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ
    ]
    if missing:
        raise RuntimeError(
            f"environment variables {missing} are not set: start this program with torchrun"
        )
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device


def worker_device() -> torch.device:
    """The device this worker computes on: its GPU under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
