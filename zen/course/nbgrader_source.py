"""Instructor labs as nbgrader sources: ``zen lab nbgrader labs/source/LAB.ipynb OUTDIR``.

nbgrader (https://nbgrader.readthedocs.io) reads cell metadata, not tags. :func:`to_nbgrader`
marks each solution cell ``solution`` (nbgrader stubs the ``### BEGIN/END SOLUTION`` region
itself), each ``check`` cell an autograded test worth one point per sub-check it passes on the
solution, and every other code cell read-only (``locked``: restored at autograding, so a
student cannot edit the set-up). ``# HINT:`` lines move above ``### BEGIN SOLUTION``, where
nbgrader keeps them. nbgrader grades a test cell all or nothing.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from zen.course.labs import _REGION, CHECK_TAG, RAISES_TAG, _check_name, blank_regions, check_points

SCHEMA_VERSION = 3
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def _grade_id(text: str, used: set[str]) -> str:
    """A unique nbgrader ``grade_id``: only ``[A-Za-z0-9_-]``."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:60] or "cell"
    grade_id, n = base, 2
    while grade_id in used:
        grade_id, n = f"{base}_{n}", n + 1
    used.add(grade_id)
    return grade_id


def _hints_above(match: re.Match) -> str:
    """A region with its ``# HINT:`` lines moved above ``### BEGIN SOLUTION`` (same indentation)."""
    indent, body = match.group(1), match.group(2)
    hints = [line for line in body.splitlines() if line.strip().startswith("# HINT:")]
    code = "".join(
        line + "\n" for line in body.splitlines() if not line.strip().startswith("# HINT:")
    )
    above = "".join(f"{indent}{line.strip()}\n" for line in hints)
    return f"{above}{indent}### BEGIN SOLUTION\n{code}{indent}### END SOLUTION{match.group(3)}"


def to_nbgrader(
    source: nbformat.NotebookNode, points: list[int] | None = None
) -> nbformat.NotebookNode:
    """An nbgrader source notebook from an instructor lab, with ``points`` per check cell.

    By default the points come from running the solution.
    """
    blank_regions(source)  # raises on unbalanced markers
    checks = [
        c for c in source.cells if c.cell_type == "code" and CHECK_TAG in c.metadata.get("tags", [])
    ]
    if not checks:
        raise ValueError("the instructor notebook has no cell tagged 'check'")
    points = check_points(source) if points is None else points
    if len(points) != len(checks) or any(not (isinstance(p, int) and p > 0) for p in points):
        raise ValueError(
            f"points must be one positive integer per check cell ({len(checks)}), got {points!r}"
        )
    nb = copy.deepcopy(source)
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata.pop("zen", None)
    used: set[str] = set()
    check_number = solution_number = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        tags = cell.metadata.get("tags", [])
        meta = {"schema_version": SCHEMA_VERSION, "task": False}
        if CHECK_TAG in tags:
            name = _check_name(cell, check_number + 1)
            meta |= {
                "grade": True,
                "solution": False,
                "locked": True,
                "points": points[check_number],
                "grade_id": _grade_id(f"check_{check_number + 1}_{name}", used),
            }
            check_number += 1
            cell.metadata["tags"] = [t for t in tags if t not in (CHECK_TAG, RAISES_TAG)]
        elif _REGION.search(cell.source):
            solution_number += 1
            cell.source = _REGION.sub(_hints_above, cell.source)
            meta |= {
                "grade": False,
                "solution": True,
                "locked": False,
                "grade_id": _grade_id(f"solution_{solution_number}", used),
            }
        else:
            meta |= {
                "grade": False,
                "solution": False,
                "locked": True,
                "grade_id": _grade_id(f"given_{len(used) + 1}", used),
            }
        cell.metadata["nbgrader"] = meta
        if not cell.metadata.get("tags"):
            cell.metadata.pop("tags", None)
    return nb


def write_nbgrader_source(source_path: str | Path, outdir: str | Path) -> Path:
    """Write ``outdir/<lab>.ipynb``, the nbgrader source of an instructor lab; return its path."""
    source_path, outdir = Path(source_path), Path(outdir)
    if not source_path.is_file():
        raise FileNotFoundError(f"no instructor notebook at {source_path}")
    if outdir.exists() and not outdir.is_dir():
        raise NotADirectoryError(f"OUTDIR must be a folder, got the file {outdir}")
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / source_path.name
    nbformat.write(to_nbgrader(nbformat.read(source_path, as_version=4)), target)
    return target
