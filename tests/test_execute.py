"""`zen execute` runs a notebook in a fresh kernel and records what it ran."""

from __future__ import annotations

import subprocess
import sys

import nbformat

from zen.course.notebooks import execute, freshness_problems


def _notebook(tmp_path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t")] + [
        nbformat.v4.new_code_cell(s) for s in sources
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    return path


def test_execute_writes_outputs_and_hash(tmp_path):
    path = _notebook(
        tmp_path,
        "import os\nprint(os.environ['ZEN_SCALE'], os.environ['TQDM_DISABLE'])",
        "x = 2",
        "x * 21",
    )
    execute(path, timeout=120)
    nb = nbformat.read(path, as_version=4)
    assert not freshness_problems(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].outputs[0]["text"].strip() == "small 1"
    assert code[2].outputs[0]["data"]["text/plain"] == "42"
    assert nb.metadata["zen"]["scale"] == "small"


def test_execute_command_line_fails_on_error_and_leaves_file(tmp_path):
    path = _notebook(tmp_path, "raise RuntimeError('boom')")
    before = path.read_text()
    result = subprocess.run(
        [sys.executable, "-m", "zen", "execute", str(path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode != 0 and "boom" in result.stderr
    assert path.read_text() == before


def test_check_command_reports_stale(tmp_path):
    path = _notebook(tmp_path, "1 + 1")
    result = subprocess.run(
        [sys.executable, "-m", "zen", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "never run" in result.stdout


def test_executed_notebooks_keep_no_progress_bar(tmp_path):
    # tqdm's notebook bar ignores TQDM_DISABLE on its own; the execution kernel's start-up file
    # fixes it
    path = _notebook(
        tmp_path,
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='bar'):\n    pass\nprint('done')",
    )
    execute(path)
    outputs = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"][
        0
    ].outputs
    assert [o.get("text") for o in outputs] == ["done\n"], outputs
