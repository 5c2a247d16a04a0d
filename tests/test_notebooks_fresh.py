"""Committed notebooks carry the outputs of one fresh top-to-bottom run of their current code."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import nbformat
import pytest

from zen.course.notebooks import code_hash, find_notebooks, freshness_problems
from zen.course.sweep import sweep_problems

ROOT = Path(__file__).resolve().parents[1]
# instructor sources (labs/source/) are skipped: tests/test_labs.py gates them
NOTEBOOKS = find_notebooks([ROOT / "book", ROOT / "labs"])


def test_instructor_sources_are_not_in_the_fresh_set():
    assert NOTEBOOKS and not any(p.parent.name == "source" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_outputs_are_fresh(path):
    problems = freshness_problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


@pytest.fixture
def fresh_notebook():
    nb = nbformat.read(ROOT / "book" / "optimisation.ipynb", as_version=4)
    assert not freshness_problems(nb)
    return nb


def test_an_edited_code_cell_is_caught(fresh_notebook):
    nb = copy.deepcopy(fresh_notebook)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    cell.source += "\nprint('an edit made after the outputs')"
    problems = freshness_problems(nb)
    assert any("code cells changed" in p for p in problems)


def test_an_unexecuted_cell_is_caught(fresh_notebook):
    nb = copy.deepcopy(fresh_notebook)
    nb.cells.append(nbformat.v4.new_code_cell("1 + 1"))
    nb.metadata["zen"]["code_hash"] = code_hash(nb)  # even with a matching hash
    assert any("no execution count" in p for p in freshness_problems(nb))


def test_out_of_order_execution_is_caught(fresh_notebook):
    nb = copy.deepcopy(fresh_notebook)
    code = [c for c in nb.cells if c.cell_type == "code"]
    code[0].execution_count, code[1].execution_count = (
        code[1].execution_count,
        code[0].execution_count,
    )
    assert any("not 1.." in p for p in freshness_problems(nb))


def test_missing_outputs_and_metadata_are_caught(fresh_notebook):
    nb = copy.deepcopy(fresh_notebook)
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs = []
    del nb.metadata["zen"]
    problems = freshness_problems(nb)
    assert any("never run by `zen execute`" in p for p in problems)
    assert any("no code cell has any output" in p for p in problems)


def test_markdown_edits_do_not_invalidate_outputs(fresh_notebook):
    nb = copy.deepcopy(fresh_notebook)
    next(c for c in nb.cells if c.cell_type == "markdown").source += "\nA clarified sentence."
    assert not freshness_problems(nb)


def test_every_book_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for path in find_notebooks([ROOT / "book"]):
        assert f"book/{path.stem}" in toc, f"{path.name} is not listed in _toc.yml"


# ---------------------------------------------------------------- every draw, not one

BOOK = find_notebooks([ROOT / "book"])
#: seeding that bypasses ZEN_SEED: notebooks use zen.seed_everything, zen.generator and zen.rng
DIRECT_SEEDING = re.compile(
    r"torch\.(cuda\.)?manual_seed(_all)?\(|\.manual_seed\(|np\.random\.seed\(|np\.random\.default_rng\(|"
    r"np\.random\.RandomState\(|(?<![\w.])random\.seed\("
)
ALL_NOTEBOOKS = find_notebooks([ROOT / "book", ROOT / "labs"]) + sorted(
    (ROOT / "labs" / "source").glob("*.ipynb")
)


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_seed_goes_through_zen(path):
    nb = nbformat.read(path, as_version=4)
    found = [
        line.strip()
        for c in nb.cells
        if c.cell_type == "code"
        for line in c.source.splitlines()
        if DIRECT_SEEDING.search(line)
    ]
    assert not found, (
        f"{path.relative_to(ROOT)} seeds directly, so ZEN_SEED cannot move it: {found}; "
        "use zen.seed_everything(k), zen.generator(k) or zen.rng(k)"
    )


def test_direct_seeding_is_recognised():
    for line in [
        "torch.manual_seed(0)",
        "g = torch.Generator().manual_seed(1)",
        "np.random.seed(3)",
        "rng = np.random.default_rng(0)",
        "random.seed(4)",
        "torch.cuda.manual_seed_all(0)",
    ]:
        assert DIRECT_SEEDING.search(line), line
    for line in [
        "zen.seed_everything(0)",
        "g = zen.generator(1)",
        "rng = zen.rng(0)",
        "zen.generator(0, device)",
    ]:
        assert not DIRECT_SEEDING.search(line), line


@pytest.mark.parametrize("path", BOOK, ids=lambda p: str(p.relative_to(ROOT)))
def test_claims_were_swept_for_every_draw(path):
    """`zen sweep` passed seeds 0-4 with 1 and 2 threads on this notebook's current code."""
    problems = sweep_problems(path)
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems[:4])


PROGRESS_BAR = re.compile(r"\d+%\|.*\| *\d+/\d+|it/s\]|s/it\]")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_outputs_carry_no_progress_bar(path):
    nb = nbformat.read(path, as_version=4)
    for number, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), start=1):
        for out in cell.get("outputs", []):
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            assert not PROGRESS_BAR.search(text), (
                f"code cell {number} keeps progress-bar output: {text[:80]!r}"
            )
    widgets = json.dumps(nb.metadata.get("widgets", {}))
    assert not PROGRESS_BAR.search(widgets), (
        "the saved widget state keeps a progress bar (an old run's): `zen execute` drops it"
    )
