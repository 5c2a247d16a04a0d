"""The book builds offline with warnings as errors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.book
@pytest.mark.slow
def test_book_builds_without_warnings(tmp_path):
    if shutil.which("jupyter-book") is None:
        pytest.skip("jupyter-book is not installed (pip install -r requirements.txt)")
    out = tmp_path / "build"
    cmd = [
        "jupyter-book",
        "build",
        str(ROOT),
        "-W",
        "-n",
        "--keep-going",
        "--builder",
        "html",
        "--path-output",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = out / "_build" / "html"
    assert (html / "book" / "optimisation.html").exists()
    assert (html / "book" / "backprop.html").exists()
    page = (html / "book" / "optimisation.html").read_text()
    assert "<img" in page  # the committed figures are rendered


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
