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

import ast
import copy
import json
import os
import re
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK_TAG = "check"
RAISES_TAG = "raises-exception"
_REGION = re.compile(
    r"^([ \t]*)### BEGIN SOLUTION[ \t]*\n(.*?)^[ \t]*### END SOLUTION[ \t]*(\n|$)", re.M | re.S
)
_HINT = re.compile(r"^[ \t]*# HINT:[ \t]*(.*)$", re.M)
#: exception names that count as "the check failed" (a NameError or ImportError means the
#: notebook is broken)
FAILURE_NAMES = {"AssertionError", "LabCheckFailed", "NotImplementedError"}


def _stub(match: re.Match) -> str:
    """A solution region as the student sees it: the hint as a comment wrapped to 100 columns
    (the width of a code cell in the book), then a short ``raise NotImplementedError``."""
    indent, body = match.group(1), match.group(2)
    hints = _HINT.findall(body)
    hint = " ".join(h.strip() for h in hints) or "your code here"
    width = max(40, 100 - len(indent) - 2)
    comment = "".join(f"{indent}# {line}\n" for line in textwrap.wrap(f"TODO: {hint}", width))
    return f'{comment}{indent}raise NotImplementedError("TODO: replace this line (hint above)")\n'


def count_regions(nb: nbformat.NotebookNode) -> int:
    """Number of solution regions in the code cells of ``nb``."""
    return sum(len(_REGION.findall(c.source)) for c in nb.cells if c.cell_type == "code")


def blank_regions(
    nb: nbformat.NotebookNode, which: set[int] | None = None
) -> nbformat.NotebookNode:
    """A copy of ``nb`` with the solution regions numbered in ``which`` (all if None) stubbed out.

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


# cell metadata written by make_student: {"role": "given" | "solution" | "check", "points": k}
ROLE_KEY = "zen_lab"


def role(cell: nbformat.NotebookNode) -> str:
    """``"check"``, ``"solution"`` or ``"given"`` for a released lab's cell (markdown: given)."""
    return cell.metadata.get(ROLE_KEY, {}).get(
        "role", "check" if CHECK_TAG in cell.metadata.get("tags", []) else "given"
    )


def make_student(source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The student version of an instructor notebook.

    Every region stubbed, outputs cleared, cells given roles.
    """
    nb = blank_regions(source)  # raises on unbalanced markers
    if count_regions(source) == 0:
        raise ValueError(
            "the instructor notebook has no ### BEGIN SOLUTION / ### END SOLUTION region"
        )
    for cell, original in zip(nb.cells, source.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            tags = cell.metadata.setdefault("tags", [])
            if CHECK_TAG in tags:
                cell.metadata[ROLE_KEY] = {"role": "check"}
                if RAISES_TAG not in tags:
                    tags.append(RAISES_TAG)
            else:
                cell.metadata[ROLE_KEY] = {
                    "role": "solution" if _REGION.search(original.source) else "given"
                }
    nb.metadata.pop("zen", None)
    nb.metadata.setdefault(
        "kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"}
    )
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

    def strip(nb):
        return [
            (
                c.cell_type,
                c.source,
                sorted(c.metadata.get("tags", [])),
                c.metadata.get(ROLE_KEY, {}).get("role"),
            )
            for c in nb.cells
        ]

    return strip(want) == strip(have)


def check_points(source: nbformat.NotebookNode, cell_timeout: int = 120) -> list[int]:
    """Sub-checks each check cell passes on the instructor solution: its points."""
    with tempfile.TemporaryDirectory() as tmp:
        return [
            c.points
            for c in read_checks(run(blank_regions(source, which=set()), tmp, cell_timeout))
        ]


def release(source_path: str | Path, execute: bool = True) -> Path:
    """Write the student version next to ``labs/source/``, with each check's points.

    By default, also run it.
    """
    from zen.course.notebooks import execute as run_notebook

    source_path = Path(source_path)
    if not source_path.is_file():
        raise FileNotFoundError(f"no instructor notebook at {source_path}")
    source = nbformat.read(source_path, as_version=4)
    student = make_student(source)
    checks = [c for c in student.cells if role(c) == "check"]
    for cell, points in zip(checks, check_points(source)):
        cell.metadata[ROLE_KEY]["points"] = max(points, 1)
    student.metadata[ROLE_KEY] = {"lab": source_path.stem}
    target = student_path(source_path)
    nbformat.write(student, target)
    if execute:
        run_notebook(target)
    return target


# ---------------------------------------------------------------- running and reading results

_GUARD = '__import__("zen.course.guard", fromlist=["_"])'


@dataclass
class CheckResult:
    name: str
    passed: bool
    message: str = ""
    error: str = ""  # exception class name when the check cell raised
    points: int = 0  # sub-checks passed (one point each)
    max_points: int = 1
    seconds: float = 0.0


@dataclass
class Report:
    notebook: str
    checks: list[CheckResult] = field(default_factory=list)
    error: str = ""  # a problem with the run as a whole (kernel death, no release found)
    cell_errors: list[str] = field(default_factory=list)  # errors in cells that are not checks

    @property
    def score(self) -> int:
        return sum(c.points for c in self.checks)

    @property
    def total(self) -> int:
        return sum(c.max_points for c in self.checks)

    def to_json(self) -> str:
        return json.dumps(
            {
                "notebook": self.notebook,
                "score": self.score,
                "total": self.total,
                "error": self.error,
                "cell_errors": self.cell_errors,
                "checks": [asdict(c) for c in self.checks],
            },
            indent=2,
            ensure_ascii=False,
        )


def _check_name(cell: nbformat.NotebookNode, number: int) -> str:
    lines = [line for line in cell.source.strip().splitlines() if not line.startswith(_GUARD)]
    first = lines[0] if lines else ""
    match = re.match(r"#\s*Check:\s*(.+)", first, re.I)
    return match.group(1).strip() if match else f"check {number}"


def run(
    nb: nbformat.NotebookNode, workdir: str | Path, cell_timeout: int = 60, **hooks: Any
) -> nbformat.NotebookNode:
    """Execute ``nb`` in a fresh kernel, going past errors and interrupting cells that time out."""
    from zen.course.notebooks import run as run_notebook

    return run_notebook(
        nb,
        workdir,
        timeout=cell_timeout,
        allow_errors=True,
        interrupt_on_timeout=True,
        hooks=hooks,
        preload=("torch", "zen.course.labcheck"),  # not counted against a cell's time limit
    )


def _error_text(out: nbformat.NotebookNode, cell_timeout: int | None) -> tuple[str, str]:
    """(exception name, message) of an error output, in the student's terms."""
    ename, evalue = out.get("ename", ""), str(out.get("evalue", "")).strip()
    if ename == "KeyboardInterrupt":
        return (
            ename,
            f"stopped after {cell_timeout} s: an endless loop?"
            if cell_timeout
            else "interrupted: an endless loop?",
        )
    if ename in ("SyntaxError", "IndentationError", "TabError"):
        line = re.search(r"line (\d+)", evalue) or re.search(
            r"line (\d+)", "\n".join(out.get("traceback", []))
        )
        evalue = re.sub(r"\s*\([^()]*\.py, line \d+\)$", "", evalue)
        return ename, f"{evalue} on line {line.group(1)}" if line else evalue
    return ename, evalue


def _points(cell: nbformat.NotebookNode) -> int | None:
    return cell.metadata.get(ROLE_KEY, {}).get("points")


def read_checks(
    nb: nbformat.NotebookNode,
    cell_timeout: int | None = None,
    died_at: int | None = None,
    seconds: dict[int, float] | None = None,
) -> list[CheckResult]:
    """One result per ``check``-tagged cell of a notebook executed in this run.

    A check cell earns one point per pass record (:data:`zen.course.labcheck.PASS_MIME`) it
    displayed, at most its ``points`` (from the release) and, if it raised, one fewer. Cells
    at or after ``died_at`` (the cell index where the kernel died) fail.
    """
    from zen.course.labcheck import PASS_MIME

    results = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or CHECK_TAG not in cell.metadata.get("tags", []):
            continue
        name = _check_name(cell, len(results) + 1)
        outputs = cell.get("outputs", [])
        passes = sum(
            PASS_MIME in o.get("data", {})
            for o in outputs
            if o.get("output_type") == "display_data"
        )
        most = _points(cell) or max(passes, 1)
        timing = round((seconds or {}).get(index, 0.0), 3)
        if died_at is not None and index >= died_at:
            results.append(
                CheckResult(
                    name, False, f"kernel died in cell {died_at + 1}", "KernelDied", 0, most, timing
                )
            )
            continue
        errors = [o for o in outputs if o.get("output_type") == "error"]
        if cell.get("execution_count") is None and not errors:
            results.append(
                CheckResult(
                    name,
                    False,
                    "the cell never ran (the notebook stopped earlier)",
                    "NotRun",
                    0,
                    most,
                    timing,
                )
            )
        elif errors:
            ename, message = _error_text(errors[0], cell_timeout)
            results.append(
                CheckResult(name, False, message, ename, min(passes, most - 1), most, timing)
            )
        else:
            text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
            text += "".join(
                o.get("data", {}).get("text/plain", "") + "\n"
                for o in outputs
                if o.get("output_type") == "display_data"
            )
            points = min(passes, most)
            results.append(
                CheckResult(name, points == most, text.strip(), "", points, most, timing)
            )
    return results


def cell_errors(nb: nbformat.NotebookNode, cell_timeout: int | None = None) -> list[str]:
    """Errors raised by code cells that are not checks (a syntax error, an interrupted loop...)."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and CHECK_TAG not in cell.metadata.get("tags", []):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    ename, message = _error_text(out, cell_timeout)
                    found.append(f"cell {i + 1}: {ename}: {message}")
    return found


# ---------------------------------------------------------------- grading against the release


def bound_names(source: str) -> list[str]:
    """Names a cell binds at top level (assignments, imports, defs, loop and ``with`` targets)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names: list[str] = []

    def targets(node: ast.AST) -> None:
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for element in node.elts:
                targets(element)
        elif isinstance(node, ast.Starred):
            targets(node.value)

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(node.name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                names.extend(
                    (a.asname or a.name.split(".")[0]) for a in node.names if a.name != "*"
                )
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    targets(target)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                targets(node.target)
            elif isinstance(node, (ast.For, ast.AsyncFor)):
                targets(node.target)
            elif isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    if item.optional_vars is not None:
                        targets(item.optional_vars)
            for field_name in ("body", "orelse", "finalbody", "handlers"):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    visit([n for n in getattr(node, field_name, []) if isinstance(n, ast.stmt)])
            for handler in getattr(node, "handlers", []):
                visit(handler.body)

    visit(tree.body)
    return sorted(set(names))


def _first_line(source: str) -> str:
    return next(
        (
            line.strip()
            for line in source.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ),
        "",
    )


def assemble(
    released: nbformat.NotebookNode, submission: nbformat.NotebookNode
) -> nbformat.NotebookNode:
    """The notebook to grade: the released lab's cells, the student's solution and added cells.

    As nbgrader does, every cell the release owns (set-up, checks, markdown) comes from the
    release: their number, order and content cannot be changed by editing, untagging or
    deleting them. A solution cell comes from the submission (matched by cell id, else by its
    first line such as ``def mse(...)``); a missing one keeps the release's stub. Cells the
    student added run after the cell they followed, without any ``check`` tag. Released code
    cells run wrapped by :mod:`zen.course.guard`, so student cells cannot rebind their names.
    """
    by_id = {c.get("id"): i for i, c in enumerate(released.cells) if c.get("id")}
    solutions = {
        i: c
        for i, c in enumerate(released.cells)
        if c.cell_type == "code" and role(c) == "solution"
    }
    chosen: dict[int, nbformat.NotebookNode] = {}
    extras: dict[int, list[nbformat.NotebookNode]] = {}
    anchor, unmatched = -1, []
    for cell in submission.cells:
        index = by_id.get(cell.get("id"))
        if index is not None:
            anchor = index
            if index in solutions and index not in chosen:
                chosen[index] = cell
        elif cell.cell_type == "code":
            unmatched.append((anchor, cell))
    for (
        index,
        stub,
    ) in solutions.items():  # fall back to the first line: `def mse(...)`, `class LoRA(...)`
        if index not in chosen:
            match = next(
                (
                    pair
                    for pair in unmatched
                    if _first_line(pair[1].source) == _first_line(stub.source)
                ),
                None,
            )
            if match is not None:
                unmatched.remove(match)
                chosen[index] = match[1]
    for where, cell in unmatched:
        extras.setdefault(where, []).append(cell)

    def student(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
        return nbformat.v4.new_code_cell(
            cell.source
        )  # no outputs, tags or metadata from the submission

    graded = copy.deepcopy(released)
    for cell in graded.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    graded.cells = [student(c) for c in extras.get(-1, [])]
    for index, cell in enumerate(released.cells):
        if index in solutions:
            graded.cells.append(student(chosen.get(index, cell)))
        else:
            cell = copy.deepcopy(cell)
            if cell.cell_type == "code":
                cell.source = (
                    f"{_GUARD}.before(globals())\n{cell.source}\n"
                    f"{_GUARD}.after(globals(), {bound_names(cell.source)!r})"
                )
            graded.cells.append(cell)
        graded.cells.extend(student(c) for c in extras.get(index, []))
    return graded


def find_release(submission: nbformat.NotebookNode, path: Path) -> Path | None:
    """The released lab a submission answers: named in its metadata or by its file name
    (``backprop.ipynb`` answers ``labs/backprop.ipynb``), looked up in ``labs/``."""
    names = [submission.metadata.get(ROLE_KEY, {}).get("lab", ""), path.stem]
    roots = [Path.cwd() / "labs", Path(__file__).resolve().parents[2] / "labs"]
    for name in filter(None, names):
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            continue
        for root in roots:
            if (root / f"{name}.ipynb").is_file():
                return root / f"{name}.ipynb"
    return None


def grade(path: str | Path, release: str | Path | None = None, cell_timeout: int = 60) -> Report:
    """Grade a submitted lab against its released version, in a fresh kernel.

    The check cells, their number, order and content come from the release (``release``, or
    found by :func:`find_release`); outputs are cleared and only those made in this run are
    scored; a kernel that dies fails every check from that cell on. Never raises on the
    student's mistakes: a syntax error, an exception or an endless loop (interrupted after
    ``cell_timeout`` seconds) shows up as failed checks.
    """
    from zen.course.notebooks import KernelDied

    if not (isinstance(cell_timeout, int) and cell_timeout > 0):
        raise ValueError(f"cell_timeout must be a positive number of seconds, got {cell_timeout!r}")
    path = Path(path)
    report = Report(notebook=str(path))
    try:
        submission = nbformat.read(path, as_version=4)
    except Exception as err:  # not a notebook at all
        report.error = f"cannot read notebook: {err}"
        return report
    release_path = Path(release) if release else find_release(submission, path)
    if release_path is None or not release_path.is_file():
        report.error = (
            f"cannot find the released lab for {path.name}: keep the released file name "
            f"(labs/<concept>.ipynb), or pass --release labs/<concept>.ipynb"
        )
        return report
    released = nbformat.read(release_path, as_version=4)
    graded = assemble(released, submission)
    starts: dict[int, float] = {}
    seconds: dict[int, float] = {}

    def on_cell_start(cell: nbformat.NotebookNode, cell_index: int) -> None:
        starts[cell_index] = time.perf_counter()

    def on_cell_executed(cell: nbformat.NotebookNode, cell_index: int, execute_reply: dict) -> None:
        seconds[cell_index] = time.perf_counter() - starts.get(cell_index, time.perf_counter())

    died_at = None
    try:
        executed = run(
            graded,
            path.parent.resolve(),
            cell_timeout,
            on_cell_start=on_cell_start,
            on_cell_executed=on_cell_executed,
        )
    except KernelDied as err:
        executed, died_at = err.notebook, err.cell_index
        report.error = f"kernel died in cell {died_at + 1}"
    except Exception as err:  # the kernel could not start: nothing ran, nothing is scored
        executed, died_at = graded, 0  # graded has no outputs: nothing is scored
        report.error = f"{type(err).__name__}: {err}"
    report.checks = read_checks(executed, cell_timeout, died_at, seconds)
    report.cell_errors = cell_errors(executed, cell_timeout)
    _explain_name_errors(report)
    if not report.checks and not report.error:
        report.error = f"the released lab {release_path} has no cell tagged 'check'"
    return report


def _explain_name_errors(report: Report) -> None:
    """A NameError in a check after a broken cell: say which cell broke (usually a syntax error)."""
    if not report.cell_errors:
        return
    for check in report.checks:
        if check.error == "NameError":
            check.message += f" (an earlier cell failed: {report.cell_errors[0]})"


def _grade_one(args: tuple[str, str | None, int]) -> Report:
    return grade(*args)


def grade_folder(
    folder: str | Path,
    release: str | Path | None = None,
    cell_timeout: int = 60,
    workers: int | None = None,
) -> list[Report]:
    """Grade every ``*.ipynb`` under ``folder`` (recursively), several kernels at once.

    The kernels run in a process pool.
    """
    from concurrent.futures import ProcessPoolExecutor

    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"not a folder of submissions: {folder}")
    paths = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not paths:
        raise FileNotFoundError(f"no .ipynb submissions under {folder}")
    if workers is not None and not (isinstance(workers, int) and workers > 0):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    workers = workers or max(1, min(len(paths), (os.cpu_count() or 2) // 2))
    jobs = [(str(p), str(release) if release else None, cell_timeout) for p in paths]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_grade_one, jobs))


def write_csv(reports: list[Report], target: str | Path) -> None:
    """One row per submission: notebook, score, total, error, then each check's points."""
    import csv

    names = [c.name for c in max(reports, key=lambda r: len(r.checks)).checks] if reports else []
    with open(target, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["notebook", "score", "total", "error", *names])
        for r in reports:
            writer.writerow([r.notebook, r.score, r.total, r.error, *(c.points for c in r.checks)])


# ---------------------------------------------------------------- the CI gates


def gate_problems(
    source: nbformat.NotebookNode,
    cell_timeout: int = 120,
    released: nbformat.NotebookNode | None = None,
) -> list[str]:
    """Why a lab is not sound (empty when it is). Runs the notebook ``2 + regions`` times.

    1. every check passes on the instructor version, recording at least one pass (and, given
       the ``released`` student version, exactly the points it promises);
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
            if c.error:
                problems.append(
                    f"gate 1: check '{c.name}' fails on the instructor solution: "
                    f"{c.error}: {c.message}"
                )
            elif not c.passed:
                problems.append(
                    f"gate 1: check '{c.name}' records no pass: call zen.course.labcheck's checks"
                )
        if released is not None:
            promised = [
                _points(c) for c in released.cells if c.cell_type == "code" and role(c) == "check"
            ]
            if promised != [c.max_points for c in solved]:
                problems.append(
                    f"gate 1: the released lab promises points {promised} but the solution passes "
                    f"{[c.max_points for c in solved]} sub-checks: run `zen lab release`"
                )
        for c in read_checks(run(make_student(source), tmp, cell_timeout)):
            if c.passed:
                problems.append(
                    f"gate 2: check '{c.name}' passes on the blank student version "
                    "(a vacuous check)"
                )
            elif c.error not in FAILURE_NAMES:
                problems.append(
                    f"gate 2: check '{c.name}' errors with {c.error} on the student version "
                    f"(expected NotImplementedError or AssertionError): {c.message}"
                )
        for i in range(regions):
            results = read_checks(run(blank_regions(source, which={i}), tmp, cell_timeout))
            if all(c.passed for c in results):
                problems.append(
                    f"gate 3: with solution region {i + 1} of {regions} blank, "
                    "every check still passes"
                )
    return problems
