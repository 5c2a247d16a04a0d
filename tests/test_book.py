"""The book builds offline with warnings as errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.book
@pytest.mark.slow
def test_book_builds_without_warnings(tmp_path):
    if shutil.which("jupyter-book") is None:
        pytest.skip("jupyter-book is not installed (pip install -r requirements.txt)")
    out = tmp_path / "build"
    cmd = ["jupyter-book", "build", str(ROOT), "-W", "-n", "--keep-going", "--builder", "html", "--path-output", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = out / "_build" / "html"
    assert (html / "book" / "ch01_optimisation.html").exists()
    assert (html / "book" / "ch02_backprop.html").exists()
    page = (html / "book" / "ch01_optimisation.html").read_text()
    assert "<img" in page  # the committed figures are rendered
