"""Lab notebooks: instructor sources, student versions, the CI gates, and grading.

An instructor notebook ``labs/source/<concept>.ipynb`` is the source of truth. Solutions sit
between nbgrader-style markers inside code cells::

    def mse(w, b, x, y):
        ### BEGIN SOLUTION
        # HINT: the mean of the squared residuals
        return ((x @ w + b - y) ** 2).mean()
        ### END SOLUTION

Cells that check the student's work carry the tag ``check`` and start with a comment naming
the check (``# Check: the MSE``). :func:`make_student` replaces every region by a stub that
raises ``NotImplementedError`` with the hint, clears outputs, and tags check cells
``raises-exception`` so that the student version executes top to bottom (its checks fail until
the student fills the gaps). :func:`gate_problems` proves a lab sound: checks pass on the
solution, fail on the blank version, and each region is covered by at least one check.
:func:`grade` runs a completed notebook in a fresh kernel with a time limit and scores it.
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK_TAG = "check"
RAISES_TAG = "raises-exception"
_REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*### END SOLUTION[ \t]*(\n|$)", re.M | re.S)
_HINT = re.compile(r"^[ \t]*# HINT:[ \t]*(.*)$", re.M)
#: exception names that count as "the check failed" (a NameError or ImportError means the notebook is broken)
FAILURE_NAMES = {"AssertionError", "LabCheckFailed", "NotImplementedError"}


def _stub(match: re.Match) -> str:
    indent, body = match.group(1), match.group(2)
    hints = _HINT.findall(body)
    hint = " ".join(h.strip() for h in hints) or "your code here"
    return f"{indent}# TODO: {hint}\n{indent}raise NotImplementedError({'TODO: ' + hint!r})\n"


def count_regions(nb: nbformat.NotebookNode) -> int:
    """Number of solution regions in the code cells of ``nb``."""
    return sum(len(_REGION.findall(c.source)) for c in nb.cells if c.cell_type == "code")


def blank_regions(nb: nbformat.NotebookNode, which: set[int] | None = None) -> nbformat.NotebookNode:
    """A copy of ``nb`` with the solution regions numbered in ``which`` (all if ``None``) stubbed out.

    Regions that stay filled lose only their marker lines.
    """
    nb = copy.deepcopy(nb)
    counter = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue

        def replace(match: re.Match) -> str:
            nonlocal counter
            index, counter = counter, counter + 1
            if which is None or index in which:
                return _stub(match)
            return match.group(2)

        cell.source = _REGION.sub(replace, cell.source)
        if BEGIN in cell.source or END in cell.source:
            raise ValueError(f"unbalanced solution markers in cell:\n{cell.source}")
    return nb


def make_student(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of an instructor notebook: every region stubbed, outputs cleared."""
    nb = blank_regions(source)  # raises on unbalanced markers
    if count_regions(source) == 0:
        raise ValueError("the instructor notebook has no ### BEGIN SOLUTION / ### END SOLUTION region")
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            tags = cell.metadata.setdefault("tags", [])
            if CHECK_TAG in tags and RAISES_TAG not in tags:
                tags.append(RAISES_TAG)
    nb.metadata.pop("zen", None)
    return nb


def student_path(source_path: Path) -> Path:
    """``labs/source/x.ipynb`` → ``labs/x.ipynb``."""
    return source_path.parent.parent / source_path.name


def student_is_current(source_path: Path) -> bool:
    """True when the committed student version's cells equal :func:`make_student` of the source."""
    target = student_path(source_path)
    if not target.exists():
        return False
    want = make_student(nbformat.read(source_path, as_version=4))
    have = nbformat.read(target, as_version=4)
    strip = lambda nb: [(c.cell_type, c.source, sorted(c.metadata.get("tags", []))) for c in nb.cells]  # noqa: E731
    return strip(want) == strip(have)


def release(source_path: str | Path, execute: bool = True) -> Path:
    """Write the student version next to ``labs/source/`` and (by default) run it for its outputs."""
    from zen.course.notebooks import execute as run_notebook

    source_path = Path(source_path)
    target = student_path(source_path)
    nbformat.write(make_student(nbformat.read(source_path, as_version=4)), target)
    if execute:
        run_notebook(target)
    return target


# ---------------------------------------------------------------- running and reading results


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str = ""
    error: str = ""  # exception class name when the check cell raised


@dataclass
class Report:
    notebook: str
    checks: list[CheckResult] = field(default_factory=list)
    error: str = ""  # a problem with the run as a whole (timeout, kernel death)
    cell_errors: list[str] = field(default_factory=list)  # errors in cells that are not checks

    @property
    def score(self) -> int:
        return sum(c.passed for c in self.checks)

    def to_json(self) -> str:
        return json.dumps({"notebook": self.notebook, "score": self.score, "total": len(self.checks),
                           "error": self.error, "cell_errors": self.cell_errors, "checks": [asdict(c) for c in self.checks]}, indent=2, ensure_ascii=False)


def _check_name(cell: nbformat.NotebookNode, number: int) -> str:
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    match = re.match(r"#\s*Check:\s*(.+)", first, re.I)
    return match.group(1).strip() if match else f"check {number}"


def run(nb: nbformat.NotebookNode, workdir: str | Path, cell_timeout: int = 60) -> nbformat.NotebookNode:
    """Execute ``nb`` in a fresh kernel, continuing past errors and interrupting cells that time out."""
    from zen.course.notebooks import run as run_notebook

    return run_notebook(nb, workdir, timeout=cell_timeout, allow_errors=True, interrupt_on_timeout=True)


def read_checks(nb: nbformat.NotebookNode) -> list[CheckResult]:
    """One result per ``check``-tagged cell of an executed notebook."""
    results = []
    for cell in nb.cells:
        if cell.cell_type != "code" or CHECK_TAG not in cell.metadata.get("tags", []):
            continue
        name = _check_name(cell, len(results) + 1)
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if cell.get("execution_count") is None and not errors:
            results.append(CheckResult(name, False, "the cell never ran (the notebook stopped earlier)", "NotRun"))
        elif errors:
            err = errors[0]
            results.append(CheckResult(name, False, str(err.get("evalue", "")).strip(), err.get("ename", "")))
        else:
            text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
            results.append(CheckResult(name, True, text.strip()))
    return results


def cell_errors(nb: nbformat.NotebookNode) -> list[str]:
    """Errors raised by code cells that are not checks (a syntax error, an interrupted loop, ...)."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and CHECK_TAG not in cell.metadata.get("tags", []):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    found.append(f"cell {i + 1}: {out.get('ename')}: {str(out.get('evalue', '')).strip()}")
    return found


def grade(path: str | Path, cell_timeout: int = 60) -> Report:
    """Run a completed lab notebook in a fresh kernel and report each check.

    Never raises on the student's mistakes: a syntax error, an exception or an infinite loop
    (interrupted after ``cell_timeout`` seconds) shows up as failed checks.
    """
    path = Path(path)
    report = Report(notebook=str(path))
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as err:  # not a notebook at all
        report.error = f"cannot read notebook: {err}"
        return report
    try:
        executed = run(nb, path.parent.resolve(), cell_timeout)
    except Exception as err:  # the kernel died or could not start
        report.error = f"{type(err).__name__}: {err}"
        executed = nb
    report.checks = read_checks(executed)
    report.cell_errors = cell_errors(executed)
    if not report.checks and not report.error:
        report.error = "no cell tagged 'check' was found"
    return report


# ---------------------------------------------------------------- the CI gates


def gate_problems(source: nbformat.NotebookNode, cell_timeout: int = 120) -> list[str]:
    """Why a lab is not sound (empty when it is). Runs the notebook ``2 + regions`` times.

    1. every check passes on the instructor version;
    2. on the student version every check fails with ``NotImplementedError``/``AssertionError``
       (a ``NameError`` or ``ImportError`` means the notebook itself is broken);
    3. blanking any single region makes at least one check fail (no region is left unchecked).
    """
    problems: list[str] = []
    regions = count_regions(source)
    with tempfile.TemporaryDirectory() as tmp:
        solved = read_checks(run(blank_regions(source, which=set()), tmp, cell_timeout))
        if not solved:
            return ["the lab has no cell tagged 'check'"]
        for c in solved:
            if not c.passed:
                problems.append(f"gate 1: check '{c.name}' fails on the instructor solution: {c.error}: {c.message}")
        for c in read_checks(run(make_student(source), tmp, cell_timeout)):
            if c.passed:
                problems.append(f"gate 2: check '{c.name}' passes on the blank student version (a vacuous check)")
            elif c.error not in FAILURE_NAMES:
                problems.append(f"gate 2: check '{c.name}' errors with {c.error} on the student version "
                                f"(expected NotImplementedError or AssertionError): {c.message}")
        for i in range(regions):
            results = read_checks(run(blank_regions(source, which={i}), tmp, cell_timeout))
            if all(c.passed for c in results):
                problems.append(f"gate 3: with solution region {i + 1} of {regions} blank, every check still passes")
    return problems
