"""The library and the course's tooling stay apart.

Nothing in ``zen`` outside ``zen.course`` imports ``zen.course``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ZEN = Path(__file__).resolve().parent.parent / "zen"
ENTRY_POINTS = {ZEN / "__main__.py"}  # ``python -m zen`` is the command line, so it may


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_the_library_never_imports_the_course_tooling():
    offenders = {}
    for path in sorted(ZEN.rglob("*.py")):
        if path in ENTRY_POINTS or (ZEN / "course") in path.parents:
            continue
        bad = sorted(
            name
            for name in _imports(path)
            if name == "zen.course" or name.startswith("zen.course.")
        )
        if bad:
            offenders[str(path.relative_to(ZEN.parent))] = bad
    assert not offenders, f"library modules import zen.course: {offenders}"


def test_the_check_finds_an_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from zen.course.labcheck import check_true\n", encoding="utf-8"
    )
    assert "zen.course.labcheck" in _imports(module)
