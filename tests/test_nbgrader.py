"""nbgrader for real: ``zen lab nbgrader`` writes a source that nbgrader releases and autogrades.

Builds a course directory, runs ``nbgrader generate_assignment`` and ``nbgrader autograde`` on lab 1
with a correct, a wrong and an endless-loop submission, and checks the scores — the commands and
configuration that ``book/instructors.md`` gives.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from zen.course.labs import blank_regions
from zen.course.nbgrader_source import to_nbgrader

pytest.importorskip("nbgrader", reason="nbgrader is in requirements-dev.txt")

ROOT = Path(__file__).resolve().parents[1]
LAB = "gradient_descent"
SOURCE = ROOT / "labs" / "source" / f"{LAB}.ipynb"
CONFIG = """c = get_config()
c.CourseDirectory.course_id = "zen"
c.CourseDirectory.root = "."
# above the checks' own limits (10 s per call, 30 s for a distributed deadlock), so those fire first
c.Execute.timeout = 60
c.Execute.interrupt_on_timeout = True
"""


def test_the_nbgrader_source_has_valid_metadata():
    nb = to_nbgrader(nbformat.read(SOURCE, as_version=4), points=[1, 1, 2])
    meta = [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.metadata]
    ids = [m["grade_id"] for m in meta]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[A-Za-z0-9_-]+", i) for i in ids)
    assert all(m["schema_version"] == 3 for m in meta)
    assert [m["points"] for m in meta if m["grade"]] == [1, 1, 2]
    assert sum(m["solution"] for m in meta) == 3 and nb.metadata["kernelspec"]["name"] == "python3"
    mse = next(c.source for c in nb.cells if c.source.startswith("def mse("))
    assert mse.index("# HINT:") < mse.index("### BEGIN SOLUTION")  # where nbgrader keeps it
    with pytest.raises(ValueError, match="one positive integer per check cell"):
        to_nbgrader(nbformat.read(SOURCE, as_version=4), points=[1])


def _nbgrader(course: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_nbgrader_generates_and_autogrades_a_lab(tmp_path):
    course = tmp_path / "course"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "zen",
            "lab",
            "nbgrader",
            str(SOURCE),
            str(course / "source" / "lab01"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (course / "nbgrader_config.py").write_text(CONFIG)
    _nbgrader(course, "generate_assignment", "lab01", "--force")
    released = nbformat.read(course / "release" / "lab01" / f"{LAB}.ipynb", as_version=4)
    assert "### BEGIN SOLUTION" not in "".join(c.source for c in released.cells)
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in blank_regions(
            nbformat.read(course / "source" / "lab01" / f"{LAB}.ipynb", as_version=4), which=set()
        ).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    wrong = {"def mse(": lambda s: s.replace(".mean()", ".sum()")}
    loop = {"def mse(": lambda s: s.splitlines()[0] + "\n    while True:\n        pass\n"}
    for student, edits in {"correct": {}, "wrong": wrong, "loop": loop}.items():
        nb = nbformat.read(course / "release" / "lab01" / f"{LAB}.ipynb", as_version=4)
        for cell in nb.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                cell.source = answers[grade_id]
                for start, edit in edits.items():
                    if cell.source.startswith(start):
                        cell.source = edit(cell.source)
        folder = course / "submitted" / student / "lab01"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / f"{LAB}.ipynb")
    _nbgrader(course, "autograde", "lab01", "--create", "--force")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="zen") as gradebook:
        scores = {
            s: (
                gradebook.find_submission("lab01", s).score,
                gradebook.find_submission("lab01", s).max_score,
            )
            for s in ("correct", "wrong", "loop")
        }
    assert scores == {"correct": (4, 4), "wrong": (3, 4), "loop": (3, 4)}
