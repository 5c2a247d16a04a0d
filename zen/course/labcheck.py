"""Checks for lab notebooks: compare a student's answer with the reference and explain differences.

Every check either prints one line starting with ``✓`` or raises :class:`LabCheckFailed` (an
``AssertionError``) whose message says *what* differs — ``None`` returned, wrong type, shape,
dtype, NaN/inf, the first mismatching index with expected vs got — and a *hint* why. Errors
raised inside the student's code, and code that runs longer than ``timeout`` seconds, are
reported the same way instead of crashing the notebook::

    check_function(mse, reference=linreg_mse, cases=[(x, y, w, b)], hint="average, not sum")
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["LabCheckFailed", "StudentCodeTimeout", "check_tensor", "check_scalar", "check_function", "check_true", "time_limit"]


class LabCheckFailed(AssertionError):
    """A lab check failed; the message says what differs and hints why."""


class StudentCodeTimeout(Exception):
    """The student's code ran longer than the check allows (an infinite loop?)."""


def _show_check_failure(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> list[str]:
    """IPython handler for :class:`LabCheckFailed`: show the check's message, not a traceback into ``zen``.

    The cell still ends in an error (so "run all" stops there and graders see it); only the
    display is shortened, because the frames inside the checking code mean nothing to a student.
    """
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    shell._showtraceback(etype, value, stb)  # IPython leaves the display to a custom handler
    return stb


def _install_ipython_display() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python: the normal traceback
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((LabCheckFailed,), _show_check_failure)


_install_ipython_display()


def _fail(name: str, what: str, hint: str) -> None:
    __tracebackhide__ = True  # IPython and pytest hide this frame: the student sees the check cell
    message = f"✗ {name}: {what}"
    if hint:
        message += f"\n  hint: {hint}"
    raise LabCheckFailed(message) from None


@contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`StudentCodeTimeout` if the body runs longer than ``seconds`` (Unix main thread only)."""
    usable = seconds and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise StudentCodeTimeout(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _compare(got: Any, expected: torch.Tensor, name: str, atol: float, rtol: float, hint: str, check_dtype: bool) -> None:
    __tracebackhide__ = True
    if got is None:
        _fail(name, f"got None, expected a tensor of shape {tuple(expected.shape)}", hint or "did you forget `return`?")
    if not isinstance(got, torch.Tensor):
        try:
            got = torch.as_tensor(got, dtype=expected.dtype)
        except (TypeError, ValueError, RuntimeError):
            _fail(name, f"got a {type(got).__name__}, expected a torch.Tensor of shape {tuple(expected.shape)}", hint)
    if tuple(got.shape) != tuple(expected.shape):
        _fail(name, f"shape is {tuple(got.shape)}, expected {tuple(expected.shape)}", hint or "check which axis you sum or multiply over")
    if check_dtype and got.dtype != expected.dtype:
        _fail(name, f"dtype is {got.dtype}, expected {expected.dtype}", hint)
    got = got.detach().to("cpu", torch.float64)
    exp = expected.detach().to("cpu", torch.float64)
    bad = ~torch.isfinite(got) & torch.isfinite(exp)
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        _fail(name, f"contains NaN or inf, first at index {idx} (got {got[idx].item()}, expected {exp[idx].item()})",
              hint or "look for a division by zero, a log of 0 or an exploding update")
    close = torch.isclose(got, exp, atol=atol, rtol=rtol, equal_nan=True)
    if not close.all():
        idx = tuple(int(i) for i in (~close).nonzero()[0])
        where = f" at index {idx}" if idx else ""
        worst = (got - exp).abs().max().item()
        _fail(name, f"values differ{where}: expected {exp[idx].item():.6g}, got {got[idx].item():.6g} "
                    f"({int((~close).sum())} of {close.numel()} entries wrong; largest error {worst:.3g}, "
                    f"tolerance atol={atol:g}, rtol={rtol:g})", hint)


def check_tensor(got: Any, expected: torch.Tensor, name: str = "result", *, atol: float = 1e-6, rtol: float = 1e-5,
                 hint: str = "", check_dtype: bool = False, quiet: bool = False) -> None:
    """Check ``got`` equals ``expected`` (shape, optionally dtype, values within tolerance)."""
    __tracebackhide__ = True
    _compare(got, expected, name, atol, rtol, hint, check_dtype)
    if not quiet:
        print(f"✓ {name}: passed")


def check_scalar(got: Any, expected: float, name: str = "result", *, atol: float = 1e-6, rtol: float = 1e-5, hint: str = "") -> None:
    """Check a number (a Python float or a 0-D tensor) equals ``expected`` within tolerance."""
    __tracebackhide__ = True
    if got is None:
        _fail(name, f"got None, expected a number close to {expected:.6g}", hint or "did you forget `return`?")
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            _fail(name, f"got a tensor of shape {tuple(got.shape)}, expected a single number", hint or "reduce with .mean() or .sum()")
        got = got.item()
    if not isinstance(got, (int, float)):
        _fail(name, f"got a {type(got).__name__}, expected a number", hint)
    if not math.isfinite(got):
        _fail(name, f"got {got}, expected {expected:.6g}", hint)
    if not math.isclose(got, expected, abs_tol=atol, rel_tol=rtol):
        _fail(name, f"expected {expected:.6g}, got {got:.6g}", hint)
    print(f"✓ {name}: passed")


def check_true(condition: bool, name: str, what: str, hint: str = "") -> None:
    """Pass when ``condition`` holds; otherwise fail with ``what`` (a sentence saying what is wrong)."""
    __tracebackhide__ = True
    if not condition:
        _fail(name, what, hint)
    print(f"✓ {name}: passed")


def _call(fn: Callable, case: Any, name: str, hint: str, timeout: float | None) -> Any:
    __tracebackhide__ = True
    args, kwargs = (case, {}) if isinstance(case, tuple) else ((), case) if isinstance(case, Mapping) else ((case,), {})
    try:
        with time_limit(timeout):
            return fn(*_clone(args), **_clone(kwargs))
    except NotImplementedError as err:
        _fail(name, f"not implemented yet ({err})", hint or "replace the `raise NotImplementedError` line with your code")
    except StudentCodeTimeout as err:
        _fail(name, f"your code is {err}", hint or "is there a loop that never ends?")
    except LabCheckFailed:
        raise
    except Exception as err:  # the student's bug, reported as feedback
        _fail(name, f"your code raised {type(err).__name__}: {err}", hint)


def _clone(obj: Any) -> Any:
    """Copies of tensors, so a student function that modifies its inputs cannot fool the reference."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, tuple):
        return tuple(_clone(o) for o in obj)
    if isinstance(obj, list):
        return [_clone(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


def check_function(fn: Callable, reference: Callable, cases: Sequence[Any], name: str | None = None, *,
                   atol: float = 1e-6, rtol: float = 1e-5, hint: str = "", timeout: float | None = 10.0) -> None:
    """Call ``fn`` and ``reference`` on each case and compare the results.

    A case is a tuple of positional arguments, a dict of keyword arguments, or a single
    argument. Results may be tensors, numbers, or tuples/lists/dicts of them (compared element
    by element). The first failing case raises :class:`LabCheckFailed`.
    """
    __tracebackhide__ = True
    name = name or getattr(fn, "__name__", "function")
    if not cases:
        raise ValueError("check_function needs at least one case")
    for i, case in enumerate(cases):
        label = f"{name} (case {i + 1} of {len(cases)})" if len(cases) > 1 else name
        got = _call(fn, case, label, hint, timeout)
        expected = reference(*_clone(case)) if isinstance(case, tuple) else reference(**_clone(case)) if isinstance(case, Mapping) else reference(_clone(case))
        _compare_structure(got, expected, label, atol, rtol, hint)
    print(f"✓ {name}: passed ({len(cases)} case{'s' if len(cases) > 1 else ''})")


def _compare_structure(got: Any, expected: Any, name: str, atol: float, rtol: float, hint: str) -> None:
    __tracebackhide__ = True
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            _fail(name, f"expected a {type(expected).__name__} of {len(expected)} items, got {type(got).__name__}"
                        + (f" of {len(got)} items" if isinstance(got, (tuple, list)) else ""), hint)
        for j, (g, e) in enumerate(zip(got, expected)):
            _compare_structure(g, e, f"{name}[{j}]", atol, rtol, hint)
    elif isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            _fail(name, f"expected a dict with keys {sorted(expected)}, got {type(got).__name__}", hint)
        missing = sorted(set(expected) - set(got))
        if missing:
            _fail(name, f"missing keys {missing}", hint)
        for key in expected:
            _compare_structure(got[key], expected[key], f"{name}[{key!r}]", atol, rtol, hint)
    elif isinstance(expected, torch.Tensor):
        _compare(got, expected, name, atol, rtol, hint, check_dtype=False)
    else:
        exp_t = torch.tensor(float(expected), dtype=torch.float64)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        _compare(got, exp_t, name, atol, rtol, hint, check_dtype=False)
