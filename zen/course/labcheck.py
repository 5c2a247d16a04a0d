"""Checks for lab notebooks: compare a student's answer with the reference and explain differences.

Every check either records a pass (shown as one line starting with ``✓``) or raises
:class:`LabCheckFailed` (an ``AssertionError``) whose message says *what* differs — ``None``
returned, wrong type, shape, dtype, NaN/inf, the first mismatching entry with expected vs got, a
constant factor ("got 50× the expected value") — for which named case, and a *hint* why. Every
call into the student's code goes through :func:`call`: it is time-limited, its errors become
feedback naming the student's function and cell, and calls into a reference the lab asks the
student to write themselves are caught::

    check_function(mse, reference=linreg_mse, cases={"random w": (x, y, w, b)},
                   hint="average, not sum")
    w, b = call(gradient_descent, x, y, lr=0.1, steps=100,
                forbid={"zen.linreg.closed_form": linreg.closed_form})

Each pass is one point for ``zen lab grade``: it is displayed with the MIME type
:data:`PASS_MIME`, which the grader counts (a student's ``print('✓')`` is not counted).
"""

from __future__ import annotations

import inspect
import math
import signal
import sys
import threading
import traceback
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch

__all__ = [
    "LabCheckFailed",
    "StudentCodeTimeout",
    "PASS_MIME",
    "call",
    "check_tensor",
    "check_scalar",
    "check_function",
    "check_true",
    "passed",
    "time_limit",
]

#: MIME type of the record each passing (sub-)check displays; ``zen lab grade`` counts these
PASS_MIME = "application/vnd.zen.check+json"


class LabCheckFailed(AssertionError):
    """A lab check failed; the message says what differs and hints why.

    Making one (not importing this module) tells IPython to show it as its one-line message.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        _install_ipython_display()


class StudentCodeTimeout(Exception):
    """The student's code ran longer than the check allows (an infinite loop?)."""


def _show_check_failure(
    shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None
) -> list[str]:
    """IPython handler for :class:`LabCheckFailed`: the check's message, not a traceback into zen.

    The cell still ends in an error (so "run all" stops there and graders see it); only the
    display is shortened, because the frames inside the checking code mean nothing to a student.
    """
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    shell._showtraceback(etype, value, stb)  # IPython leaves the display to a custom handler
    return stb


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python
        return None
    return get_ipython()


def _install_ipython_display() -> None:
    shell = _shell()
    if shell is not None:
        shell.set_custom_exc((LabCheckFailed,), _show_check_failure)


_student_running = False  # True while call() runs the student's code: it cannot record passes


def passed(name: str, detail: str = "") -> None:
    """Record one passing (sub-)check: ``✓ name: passed (detail)``, one point for the grader."""
    if _student_running:
        raise LabCheckFailed(f"✗ {name}: a check was called from inside the code being checked")
    line = f"✓ {name}: passed" + (f" ({detail})" if detail else "")
    shell = _shell()
    if shell is None or not hasattr(shell, "display_pub"):
        print(line)
        return
    from IPython.display import display

    display({"text/plain": line, PASS_MIME: {"name": name}}, raw=True)


def _fail(name: str, what: str, hint: str) -> None:
    __tracebackhide__ = True  # IPython and pytest hide this frame: the student sees the check cell
    message = f"✗ {name}: {what}"
    if hint:
        message += f"\n  hint: {hint}"
    raise LabCheckFailed(message) from None


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`StudentCodeTimeout` if the body runs longer than ``seconds``.

    Enforced on Unix, in the main thread only.
    """
    if seconds is not None and not seconds > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {seconds!r}")
    usable = (
        seconds
        and hasattr(signal, "SIGALRM")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise StudentCodeTimeout(f"stopped after {seconds:g} s: an endless loop?")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- calling the student's code


def _forbidden_targets(
    forbid: Mapping[str, Any] | Sequence[Any],
) -> tuple[dict[types.CodeType, str], dict[int, str]]:
    """Code objects (Python functions, methods, classes' own methods) and builtins to watch for."""
    items = forbid.items() if isinstance(forbid, Mapping) else [(None, f) for f in forbid]
    codes: dict[types.CodeType, str] = {}
    builtins: dict[int, str] = {}
    for label, target in items:
        name = label
        if not name:
            module = getattr(target, "__module__", "") or ""
            name = f"{module}.{getattr(target, '__qualname__', repr(target))}".lstrip(".")
        if isinstance(target, type):
            # decorators (@torch.no_grad()) share a wrapper's code: watch the wrapped function
            functions = [
                inspect.unwrap(f)
                for f in vars(target).values()
                if isinstance(f, types.FunctionType)
            ]
            if not functions:
                raise ValueError(f"forbid: class {name} defines no Python methods to watch")
            codes.update({f.__code__: name for f in functions})
            continue
        function = inspect.unwrap(getattr(target, "__func__", target))
        if isinstance(function, types.FunctionType):
            codes[function.__code__] = name
        elif callable(target):
            builtins[id(target)] = name
        else:
            raise ValueError(
                f"forbid: expected functions, methods or classes, got {type(target).__name__} "
                f"for {name}"
            )
    return codes, builtins


@contextmanager
def _watch_calls(forbid: Mapping[str, Any] | Sequence[Any]) -> Iterator[list[str]]:
    """Record the names of forbidden callables that the body calls, by any import path."""
    codes, builtins = _forbidden_targets(forbid)
    seen: list[str] = []
    if not codes and not builtins:
        yield seen
        return

    def profile(frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in codes:
            seen.append(codes[frame.f_code])
        elif event == "c_call" and id(arg) in builtins:
            seen.append(builtins[id(arg)])

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(previous)


def _cell_of(filename: str) -> str | None:
    """``In [7]`` for a file IPython compiled from a notebook cell, else ``None``."""
    shell = _shell()
    number = (
        getattr(getattr(shell, "compile", None), "_filename_map", {}).get(filename)
        if shell
        else None
    )
    if number is not None:
        return f"In [{number}]"
    return "a notebook cell" if filename.startswith("<ipython-input") else None


def _where(err: BaseException, fn: Callable) -> str:
    """Which student function (and cell, line) raised ``err``: the deepest frame in a cell."""
    own = getattr(getattr(fn, "__func__", fn), "__name__", None)
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        cell = _cell_of(frame.filename)
        if cell is None:
            continue
        helper = frame.name if frame.name not in ("<module>", "<lambda>") else None
        if helper and helper != own:
            return f" in your function `{helper}` ({cell}, line {frame.lineno})"
        return f" ({cell}, line {frame.lineno})"
    return ""


def call(
    fn: Callable,
    *args: Any,
    name: str | None = None,
    timeout: float | None = 10.0,
    hint: str = "",
    forbid: Mapping[str, Any] | Sequence[Any] = (),
    **kwargs: Any,
) -> Any:
    """``fn(*args, **kwargs)`` as feedback: time-limited, errors explained, shortcuts caught.

    An exception in the student's code, ``NotImplementedError`` (a TODO), running past
    ``timeout`` seconds, or a call into one of ``forbid`` (functions, methods, classes or
    builtins, optionally as ``{display name: callable}``) raises :class:`LabCheckFailed`.
    """
    __tracebackhide__ = True
    name = name or getattr(fn, "__name__", "your code")
    if not callable(fn):
        _fail(
            name,
            f"expected a function or class, got {type(fn).__name__}",
            hint or "run the cell that defines it first",
        )
    global _student_running
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    _forbidden_targets(forbid)  # an instructor's mistake raises here, not as the student's
    outer, _student_running = _student_running, True
    seen: list[str] = []

    def shortcut_taken() -> None:  # a forbidden call explains whatever followed it
        __tracebackhide__ = True
        if seen:
            _fail(
                name,
                f"this check wants your own implementation, not {seen[0]}",
                "write it from the operations the lab describes",
            )

    try:
        with _watch_calls(forbid) as seen, time_limit(timeout):
            result = fn(*args, **kwargs)
    except NotImplementedError as err:
        shortcut_taken()
        _fail(
            name,
            f"not implemented yet ({err}){_where(err, fn)}",
            hint or "replace the `raise NotImplementedError` line with your code",
        )
    except StudentCodeTimeout as err:
        shortcut_taken()  # a forbidden call before the time ran out is the clearer feedback
        _fail(name, str(err), hint or "is there a loop whose condition never changes?")
    except LabCheckFailed:
        raise
    except Exception as err:  # the student's bug, reported as feedback
        shortcut_taken()
        _fail(name, f"your code raised {type(err).__name__}: {err}{_where(err, fn)}", hint)
    finally:
        _student_running = outer
    shortcut_taken()
    return result


# ---------------------------------------------------------------- comparing


def _fraction(k: int) -> str:
    return "½" if k == 2 else f"1/{k}"


def _factor_message(c: float, sizes: set[int]) -> str:
    """Words for ``got == c * expected`` (a sign, integer, fraction or root) and a guess why."""

    def near(a: float, b: float) -> bool:
        return abs(a - b) <= 1e-6 * max(1.0, abs(b))

    sign, a = ("−" if c < 0 else ""), abs(c)
    if near(c, -1.0):
        return "got the negative of the expected value: a sign error?"
    k = round(a)
    if k >= 2 and near(a, k):
        guess = (
            ": a sum instead of a mean?"
            if k in sizes
            else ": a factor 2 too many?"
            if k == 2
            else ""
        )
        return f"got {sign}{k}× the expected value{guess}"
    k = round(1 / a) if a > 0 else 0
    if k >= 2 and near(1 / a, k):
        guess = (
            ": a mean instead of a sum?"
            if k in sizes
            else ": a factor 2 missing?"
            if k == 2
            else ""
        )
        return f"got {sign}{_fraction(k)}× the expected value{guess}"
    for power, word in (
        (a * a, "√{k}× the expected value: a missing division by √{k} (√d_k)?"),
        (1 / (a * a), "1/√{k}× the expected value: divided by √{k} (√d_k) once too often?"),
    ):
        k = round(power)
        if k >= 2 and near(power, k) and math.isqrt(k) ** 2 != k:
            return f"got {sign}" + word.format(k=k)
    return f"got {c:.4g}× the expected value everywhere"


def _constant_factor(got: torch.Tensor, exp: torch.Tensor) -> float | None:
    """``c`` when ``got ≈ c · exp`` for a constant ``c ≠ 1``, else ``None`` (float64 CPU)."""
    norm = float((exp * exp).sum())
    if exp.numel() == 0 or norm == 0.0:
        return None
    c = float((got * exp).sum()) / norm
    if abs(c - 1) < 1e-6 or c == 0:
        return None
    residual = float((got - c * exp).norm())
    return c if residual <= 1e-6 * float(got.norm()) + 1e-12 else None


def _numbers(t: torch.Tensor) -> str:
    """Values of a small tensor, floats to 4 significant digits: ``[0.6614, 0.2669]``."""

    def fmt(v: Any) -> str:
        return (
            f"[{', '.join(fmt(u) for u in v)}]"
            if isinstance(v, list)
            else f"{v:.4g}"
            if isinstance(v, float)
            else str(v)
        )

    return fmt(t.tolist())


def _values(t: torch.Tensor) -> str:
    return _numbers(t) if t.numel() <= 8 else f"tensor of shape {tuple(t.shape)}"


def _whole(t: torch.Tensor) -> bool:
    """Small vectors and numbers are shown whole; larger tensors by their first differing index."""
    return t.dim() <= 1 and t.numel() <= 8


def difference(
    got: Any,
    expected: torch.Tensor,
    *,
    atol: float,
    rtol: float,
    check_dtype: bool = False,
    sizes: set[int] | None = None,
) -> tuple[str, str] | None:
    """How ``got`` differs from ``expected``: ``(what differs, a default hint)``, or ``None``.

    The one comparison rule of the lab checks (:mod:`zen.course.parallel_checks` uses it too):
    integers and booleans must be equal; floats may differ by ``atol + rtol·|expected|``; the
    message names the first differing index and, where ``got`` is a constant multiple of the
    expected value, says so.
    """
    if got is None:
        return (
            f"got None, expected a tensor of shape {tuple(expected.shape)}",
            "did you forget `return`?",
        )
    if not isinstance(got, torch.Tensor):
        try:
            got = torch.as_tensor(got, dtype=expected.dtype)
        except (TypeError, ValueError, RuntimeError):
            return (
                f"got a {type(got).__name__}, "
                f"expected a torch.Tensor of shape {tuple(expected.shape)}",
                "",
            )
    if tuple(got.shape) != tuple(expected.shape):
        return (
            f"shape is {tuple(got.shape)}, expected {tuple(expected.shape)}",
            "check which axis you sum or multiply over",
        )
    if check_dtype and got.dtype != expected.dtype:
        return f"dtype is {got.dtype}, expected {expected.dtype}", ""
    exact = not (expected.is_floating_point() or expected.is_complex())
    if exact:  # integers and booleans: equal or not, no tolerance
        if got.is_floating_point() and not bool((got == got.round()).all()):
            return f"got non-integer values, expected integers (dtype {expected.dtype})", ""
        got_i, exp_i = got.detach().cpu().to(torch.int64), expected.detach().cpu().to(torch.int64)
        wrong = got_i != exp_i
        if not wrong.any():
            return None
        if _whole(got_i):
            return f"expected {_values(exp_i)}, got {_values(got_i)}", ""
        idx = tuple(int(i) for i in wrong.nonzero()[0])
        return (
            f"values differ at index {idx}: expected {exp_i[idx].item()}, got {got_i[idx].item()} "
            f"({int(wrong.sum())} of {wrong.numel()} entries wrong)",
            "",
        )
    got = got.detach().to("cpu", torch.float64)
    exp = expected.detach().to("cpu", torch.float64)
    bad = ~torch.isfinite(got) & torch.isfinite(exp)
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        return (
            f"contains NaN or inf, first at index {idx} "
            f"(got {got[idx].item()}, expected {exp[idx].item()})",
            "look for a division by zero, a log of 0 or an exploding update",
        )
    close = torch.isclose(got, exp, atol=atol, rtol=rtol, equal_nan=True)
    if close.all():
        return None
    factor = _constant_factor(got, exp) if bool(torch.isfinite(exp).all()) else None
    scale = f"; {_factor_message(factor, sizes or set())}" if factor is not None else ""
    if _whole(got):
        return f"expected {_values(exp)}, got {_values(got)}{scale}", ""
    idx = tuple(int(i) for i in (~close).nonzero()[0])
    worst = (got - exp).abs().max().item()
    return (
        f"values differ at index {idx}: expected {exp[idx].item():.6g}, got {got[idx].item():.6g} "
        f"({int((~close).sum())} of {close.numel()} entries wrong; "
        f"largest error {worst:.3g}){scale}",
        "",
    )


def _compare(
    got: Any,
    expected: torch.Tensor,
    name: str,
    atol: float,
    rtol: float,
    hint: str,
    check_dtype: bool,
    sizes: set[int] | None = None,
) -> None:
    __tracebackhide__ = True
    found = difference(got, expected, atol=atol, rtol=rtol, check_dtype=check_dtype, sizes=sizes)
    if found is not None:
        what, default_hint = found
        _fail(name, what, hint or default_hint)


def _check_tolerance(atol: float, rtol: float) -> None:
    if not (atol >= 0 and rtol >= 0):
        raise ValueError(
            f"atol and rtol must be non-negative numbers, got atol={atol!r}, rtol={rtol!r}"
        )


def check_tensor(
    got: Any,
    expected: torch.Tensor,
    name: str = "result",
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hint: str = "",
    check_dtype: bool = False,
    quiet: bool = False,
) -> None:
    """Check ``got`` equals ``expected``.

    Shape, optionally dtype, and values within tolerance (integers exactly).
    """
    __tracebackhide__ = True
    if not isinstance(expected, torch.Tensor):
        raise TypeError(
            f"check_tensor: expected must be a torch.Tensor, got {type(expected).__name__}"
        )
    _check_tolerance(atol, rtol)
    _compare(got, expected, name, atol, rtol, hint, check_dtype)
    if not quiet:
        passed(name)


def check_scalar(
    got: Any,
    expected: float,
    name: str = "result",
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hint: str = "",
) -> None:
    """Check a number (a Python number or a 0-D tensor) equals ``expected``.

    Within tolerance; an int exactly.
    """
    __tracebackhide__ = True
    if isinstance(expected, bool) or not isinstance(expected, (int, float)):
        raise TypeError(f"check_scalar: expected must be a number, got {type(expected).__name__}")
    _check_tolerance(atol, rtol)
    if got is None:
        _fail(
            name,
            f"got None, expected a number close to {expected:.6g}",
            hint or "did you forget `return`?",
        )
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            _fail(
                name,
                f"got a tensor of shape {tuple(got.shape)}, expected a single number",
                hint or "reduce with .mean() or .sum()",
            )
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        _fail(name, f"got a {type(got).__name__}, expected a number", hint)
    if isinstance(expected, int):
        if got != expected:
            _fail(name, f"expected {expected}, got {got}", hint)
    else:
        if not math.isfinite(got):
            _fail(name, f"got {got}, expected {expected:.6g}", hint)
        if not math.isclose(got, expected, abs_tol=atol, rel_tol=rtol):
            factor = got / expected if expected else None
            scale = (
                f"; {_factor_message(factor, set())}"
                if factor not in (None, 0.0) and abs(factor - 1) > 1e-6
                else ""
            )
            _fail(name, f"expected {expected:.6g}, got {got:.6g}{scale}", hint)
    passed(name)


def check_true(condition: bool, name: str, what: str, hint: str = "") -> None:
    """Pass when ``condition`` holds; else fail with ``what`` (a sentence saying what is wrong)."""
    __tracebackhide__ = True
    if not condition:
        _fail(name, what, hint)
    passed(name)


def _clone(obj: Any) -> Any:
    """Copies of tensors, so a student function that edits its inputs cannot fool the reference."""
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, tuple):
        return tuple(_clone(o) for o in obj)
    if isinstance(obj, list):
        return [_clone(o) for o in obj]
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


def _split(case: Any) -> tuple[tuple, dict]:
    return (
        (case, {})
        if isinstance(case, tuple)
        else ((), dict(case))
        if isinstance(case, Mapping)
        else ((case,), {})
    )


def _short(value: Any, room: int = 40) -> str:
    if isinstance(value, torch.Tensor):
        return _numbers(value) if value.numel() <= 6 else f"<tensor {tuple(value.shape)}>"
    if isinstance(value, torch.nn.Module):
        return f"<{type(value).__name__}>"
    text = f"{value:.4g}" if isinstance(value, float) else repr(value)
    if len(text) <= room:
        return text
    if isinstance(value, (list, tuple, str)):
        return f"<{type(value).__name__} of length {len(value)}>"
    return f"<{type(value).__name__}>"


def _describe_inputs(fn: Callable, args: tuple, kwargs: dict) -> str:
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = []
    parts = [f"{names[i]}={_short(a)}" if i < len(names) else _short(a) for i, a in enumerate(args)]
    parts += [f"{k}={_short(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _sizes(obj: Any) -> set[int]:
    """Every dimension size and length in the inputs: candidates for a sum-not-mean factor."""
    if isinstance(obj, torch.Tensor):
        return {int(s) for s in obj.shape if s > 1}
    if isinstance(obj, (tuple, list)):
        return set().union(*(_sizes(o) for o in obj)) if obj else set()
    if isinstance(obj, Mapping):
        return _sizes(list(obj.values()))
    return set()


def check_function(
    fn: Callable,
    reference: Callable,
    cases: Sequence[Any] | Mapping[str, Any],
    name: str | None = None,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hint: str = "",
    timeout: float | None = 10.0,
    forbid: Mapping[str, Any] | Sequence[Any] = (),
    forbid_reference: bool = True,
) -> None:
    """Call ``fn`` and ``reference`` on each case and compare the results.

    A case is a tuple of positional arguments, a dict of keyword arguments, or a single
    argument; pass ``cases`` as a dict ``{"is_causal=True": case, ...}`` to name them in the
    feedback. Results may be tensors, numbers, or tuples/lists/dicts of them (compared element
    by element; integers exactly). Calls from ``fn`` into ``forbid`` or (unless
    ``forbid_reference=False``) into ``reference`` itself fail the check. One point per case
    is not given: the whole function is one check, and the first failing case raises.
    """
    __tracebackhide__ = True
    name = name or getattr(fn, "__name__", "function")
    if not callable(reference):
        raise TypeError(
            f"check_function: reference must be callable, got {type(reference).__name__}"
        )
    if not isinstance(cases, (Sequence, Mapping)) or isinstance(cases, str) or not cases:
        raise ValueError(
            f"check_function needs at least one case (a list or a dict of cases), got {cases!r}"
        )
    _check_tolerance(atol, rtol)
    if isinstance(forbid, Mapping):
        forbid = dict(forbid)
    else:
        forbid = {_label(f): f for f in forbid}
    if forbid_reference:
        label = getattr(reference, "__name__", "")
        forbid.setdefault(
            "the check's own reference" if label in ("", "<lambda>") else label, reference
        )
    named = cases.items() if isinstance(cases, Mapping) else [(None, c) for c in cases]
    for i, (case_name, case) in enumerate(named):
        args, kwargs = _split(case)
        inputs = _describe_inputs(fn, args, kwargs)
        which = case_name or (f"case {i + 1} of {len(cases)}" if len(cases) > 1 else "")
        label = (
            f"{name} ({which}{': ' if which and inputs else ''}{inputs})"
            if which or inputs
            else name
        )
        got = call(
            fn,
            *_clone(args),
            name=label,
            timeout=timeout,
            hint=hint,
            forbid=forbid,
            **_clone(kwargs),
        )
        ref_args, ref_kwargs = _split(_clone(case))
        expected = reference(*ref_args, **ref_kwargs)
        _compare_structure(got, expected, label, atol, rtol, hint, _sizes(case))
    passed(name, f"{len(cases)} case{'s' if len(cases) > 1 else ''}")


def _label(f: Any) -> str:
    module = getattr(f, "__module__", "") or ""
    module = "torch.nn.functional" if module == "torch._C._nn" else module
    return f"{module}.{getattr(f, '__qualname__', repr(f))}".lstrip(".")


def _plain(x: Any) -> bool:
    """Python data without floats (ints, strings, ...): compared exactly and shown whole."""
    if isinstance(x, (list, tuple)):
        return all(_plain(v) for v in x)
    return x is None or isinstance(x, (int, str, bool))


def _compare_plain(got: Any, expected: Any, name: str, hint: str) -> None:
    __tracebackhide__ = True
    if got == expected:
        return
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        first = next(
            (i for i, (g, e) in enumerate(zip(got, expected)) if g != e),
            min(len(got), len(expected)),
        )
        if len(got) == len(expected) and first == len(got):
            return  # equal up to list/tuple
        lo = max(0, first - 3)

        def window(seq: Any) -> str:
            body = ", ".join(repr(v) for v in seq[lo : lo + 8])
            head = "…, " if lo else ""
            tail = ", …" if len(seq) > lo + 8 else ""
            return f"[{head}{body}{tail}] ({len(seq)} items)"

        _fail(
            name,
            f"expected {window(expected)}, got {window(got)}; first difference at position {first}",
            hint,
        )
    _fail(name, f"expected {_short(expected, 60)}, got {_short(got, 60)}", hint)


def _compare_structure(
    got: Any, expected: Any, name: str, atol: float, rtol: float, hint: str, sizes: set[int]
) -> None:
    __tracebackhide__ = True
    if (
        isinstance(expected, (list, tuple, str))
        and _plain(expected)
        and not isinstance(got, torch.Tensor)
    ):
        _compare_plain(got, expected, name, hint)
    elif isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            _fail(
                name,
                f"expected a {type(expected).__name__} of {len(expected)} items, "
                f"got {type(got).__name__}"
                + (f" of {len(got)} items" if isinstance(got, (tuple, list)) else ""),
                hint,
            )
        for j, (g, e) in enumerate(zip(got, expected)):
            _compare_structure(g, e, f"{name}[{j}]", atol, rtol, hint, sizes)
    elif isinstance(expected, Mapping):
        if not isinstance(got, Mapping):
            _fail(
                name,
                f"expected a dict with keys {sorted(expected)}, got {type(got).__name__}",
                hint,
            )
        missing = sorted(set(expected) - set(got))
        if missing:
            _fail(name, f"missing keys {missing}", hint)
        for key in expected:
            _compare_structure(got[key], expected[key], f"{name}[{key!r}]", atol, rtol, hint, sizes)
    elif isinstance(expected, torch.Tensor):
        _compare(got, expected, name, atol, rtol, hint, check_dtype=False, sizes=sizes)
    else:
        exp_t = torch.tensor(
            expected, dtype=torch.int64 if isinstance(expected, int) else torch.float64
        )
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        _compare(got, exp_t, name, atol, rtol, hint, check_dtype=False, sizes=sizes)
