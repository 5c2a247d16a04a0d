"""Honest grades: each way a student fooled ``zen lab grade`` on a blank lab, tried again.

And the grader's reports.

Every cheat is performed on the released (blank) lab 1 and must not gain a single mark.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from zen.course.labs import assemble, blank_regions, bound_names, grade, grade_folder, role

ROOT = Path(__file__).resolve().parents[1]
LAB = "gradient_descent"
RELEASED = ROOT / "labs" / f"{LAB}.ipynb"
SOURCE = ROOT / "labs" / "source" / f"{LAB}.ipynb"
TOTAL = 4  # lab 1: mse (1), gradients (1), gradient descent (w and b: 2)

pytestmark = pytest.mark.slow


def _blank() -> nbformat.NotebookNode:
    return nbformat.read(RELEASED, as_version=4)


def _solved() -> nbformat.NotebookNode:
    """The released lab with the instructor's solutions typed into the solution cells."""
    nb, solution = _blank(), blank_regions(nbformat.read(SOURCE, as_version=4), which=set())
    for cell, answer in zip(nb.cells, solution.cells):
        if role(cell) == "solution":
            cell.source = answer.source
    return nb


def _grade(tmp_path: Path, nb: nbformat.NotebookNode, name: str = f"{LAB}.ipynb", **kwargs):
    path = tmp_path / name
    nbformat.write(nb, path)
    return grade(path, cell_timeout=kwargs.pop("cell_timeout", 60), **kwargs)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zen", "lab", "grade", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _checks(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if role(c) == "check"]


def test_the_solution_gets_full_marks_and_the_blank_lab_none(tmp_path):
    report = _grade(tmp_path, _solved())
    assert (report.score, report.total, report.error) == (TOTAL, TOTAL, ""), report.to_json()
    assert all(c.seconds > 0 for c in report.checks)  # per-check time in the JSON
    assert json.loads(report.to_json())["checks"][0]["seconds"] > 0
    blank = _grade(tmp_path, _blank())
    assert (blank.score, blank.total) == (0, TOTAL)


@pytest.mark.parametrize("replacement", ["print('✓ the mean squared error: passed')", "pass"])
def test_cheat_1_editing_the_check_cells(tmp_path, replacement):
    nb = _blank()
    for cell in _checks(nb):
        cell.source = replacement
    result = _cli(str(_write(tmp_path, nb)))
    assert f"score: 0/{TOTAL}" in result.stdout and result.returncode == 1, result.stdout


def test_cheat_2_deleting_or_untagging_the_failing_checks(tmp_path):
    nb = _blank()
    checks = _checks(nb)
    checks[0].metadata["tags"] = []  # untag one ...
    checks[0].metadata.pop("zen_lab")
    nb.cells = [c for c in nb.cells if c not in checks[1:]]  # ... and delete the others
    report = _grade(tmp_path, nb)
    assert (report.score, report.total) == (0, TOTAL)  # the release says how many checks there are
    assert [c.name for c in report.checks] == [
        c.name for c in _grade(tmp_path, _solved(), "solved.ipynb").checks
    ]


def test_cheat_3_rebinding_the_check_helpers(tmp_path):
    nb = _blank()
    fake = "check_function = check_tensor = check_scalar = lambda *a, **k: print('✓')"
    patch = (
        "import zen.course.labcheck as lc, torch\n"
        "lc.check_function = lc.check_tensor = lc.check_scalar = lambda *a, **k: None\n"
        "torch.isclose = lambda a, b, **k: torch.ones_like(a, dtype=torch.bool)"
    )
    nb.cells.insert(1, nbformat.v4.new_code_cell(fake))
    nb.cells.insert(2, nbformat.v4.new_code_cell(patch))
    report = _grade(tmp_path, nb)
    assert report.score == 0 and report.total == TOTAL, report.to_json()


def test_cheat_3b_passes_printed_by_the_student_do_not_count(tmp_path):
    nb = _blank()
    cell = next(c for c in nb.cells if c.source.startswith("def mse("))
    cell.source = (
        "def mse(x, y, w, b):\n"
        "    from zen.course.labcheck import passed\n"
        "    print('✓ the mean squared error: passed')\n"
        "    passed('the mean squared error')\n"
        "    return 0"
    )
    assert _grade(tmp_path, nb).checks[0].points == 0


def test_cheat_4_killing_the_kernel_over_fake_outputs(tmp_path):
    nb = _blank()
    nb.cells.insert(0, nbformat.v4.new_code_cell("import os\nos._exit(0)"))
    for n, cell in enumerate(_checks(nb), start=2):  # stored outputs claiming success
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="✓ passed\n")]
        cell.execution_count = n
    path = _write(tmp_path, nb)
    result = _cli(str(path), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 1 and f"score: 0/{TOTAL}" in result.stdout, result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["error"] == "kernel died in cell 1"
    assert all(c["message"] == "kernel died in cell 1" for c in report["checks"])


def _write(tmp_path: Path, nb: nbformat.NotebookNode) -> Path:
    path = tmp_path / f"{LAB}.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_submission_is_graded_against_the_release_it_names(tmp_path):
    report = _grade(tmp_path, _solved(), name="alice.ipynb")  # no lab name in the file name ...
    assert report.score == TOTAL  # ... but in the metadata
    nb = _solved()
    nb.metadata.pop("zen_lab")
    report = _grade(tmp_path, nb, name="alice.ipynb")
    assert report.error.startswith("cannot find the released lab") and report.score == 0
    assert _grade(tmp_path, nb, name="alice.ipynb", release=RELEASED).score == TOTAL


def test_assemble_keeps_student_cells_and_released_checks():
    nb = _solved()
    nb.cells.insert(4, nbformat.v4.new_code_cell("helper = 1"))
    graded = assemble(_blank(), nb)
    sources = [c.source for c in graded.cells]
    assert "helper = 1" in sources
    assert sum("zen.course.guard" in s for s in sources) == sum(
        c.cell_type == "code" and role(c) != "solution" for c in _blank().cells
    )
    assert bound_names(
        "import torch as t\nx, (y, *z) = 1, (2, 3)\nfor i in []:\n    j = i\ndef f():\n    k = 1"
    ) == ["f", "i", "j", "t", "x", "y", "z"]


def test_grade_reports_syntax_errors_and_errors_in_helpers(tmp_path):
    nb = _solved()
    cells = [c for c in nb.cells if role(c) == "solution"]
    cells[
        0
    ].source = (
        "def mse(x, y, w, b):\n    return ((x @ w + b - y) ** 2).mean(\n"  # syntax error, line 2
    )
    cells[1].source = "def mse_gradients(x, y, w, b):\n    return 1 / 0\n"
    report = _grade(tmp_path, nb)
    assert any("SyntaxError" in e and "line 2" in e for e in report.cell_errors), report.cell_errors
    assert (
        report.checks[0].error == "NameError"
        and "an earlier cell failed" in report.checks[0].message
    )
    assert (
        "ZeroDivisionError" in report.checks[1].message and ", line 2)" in report.checks[1].message
    )
    assert "in your function `mse_gradients` (In [" in report.checks[2].message, report.checks[
        2
    ].message


def test_a_cell_time_limit_interrupt_says_so(tmp_path):
    nb = _solved()
    nb.cells.insert(2, nbformat.v4.new_code_cell("while True:\n    pass"))
    report = _grade(tmp_path, nb, cell_timeout=3)
    assert any("stopped after 3 s: an endless loop?" in e for e in report.cell_errors)
    assert report.score == TOTAL


def test_grade_a_folder_into_a_csv(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    nbformat.write(_solved(), folder / f"alice_{LAB}.ipynb")
    nbformat.write(_blank(), folder / f"bob_{LAB}.ipynb")
    result = _cli(str(folder), "--csv", str(tmp_path / "grades.csv"), "--workers", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = list(csv.DictReader(open(tmp_path / "grades.csv")))
    assert [(Path(r["notebook"]).name, r["score"], r["total"]) for r in rows] == [
        (f"alice_{LAB}.ipynb", str(TOTAL), str(TOTAL)),
        (f"bob_{LAB}.ipynb", "0", str(TOTAL)),
    ]


def test_grade_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="cell_timeout"):
        grade(RELEASED, cell_timeout=0)
    with pytest.raises(NotADirectoryError):
        grade_folder(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no .ipynb"):
        grade_folder(tmp_path)
    (tmp_path / "x.ipynb").write_text("not json")
    assert grade(tmp_path / "x.ipynb").error.startswith("cannot read notebook")
