"""The book's table of contents, numbering and names (the build and every page: test_browser.py)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]


# The build itself (warnings as errors) is tested in test_browser.py, which builds the book
# once and then reads every page in Chromium.


# ------------------------------------------------------------------- names and numbers


def _toc_files() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [
        ROOT / f"{ch['file']}.ipynb"
        for part in toc["parts"]
        for ch in part["chapters"]
        if (ROOT / f"{ch['file']}.ipynb").exists()
    ]


def _title(path: Path) -> str:
    first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    return next(line for line in first.source.splitlines() if line.startswith("# "))


def test_chapter_numbers_follow_the_toc_across_parts():
    # Jupyter Book 1 restarts its numbering in every part, so titles carry the number by hand;
    # it must be the chapter's place in _toc.yml, counted across parts
    chapters = [p for p in _toc_files() if p.parent.name == "book"]
    assert chapters, "no chapter notebooks in _toc.yml"
    wrong = []
    for k, path in enumerate(chapters, start=1):
        title = _title(path)
        if not title.startswith(f"# {k}. "):
            wrong.append(f"{path.relative_to(ROOT)}: title {title!r} should start with '# {k}. '")
    assert not wrong, "renumber the titles to follow _toc.yml:\n" + "\n".join(wrong)


def test_files_and_labels_are_named_by_concept_not_number():
    numbered = [p.relative_to(ROOT) for p in _toc_files() if re.match(r"(ch|lab)\d", p.stem)]
    assert not numbered, f"name these files by their concept: {numbered}"
    for path in _toc_files():
        if path.parent.name != "book":
            continue
        first = next(
            c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"
        )
        assert first.source.startswith(f"({path.stem})="), (
            f"{path.name} must open with the label ({path.stem})="
        )
