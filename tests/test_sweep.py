"""`zen sweep`: every (seed, threads) pair runs, failing claims are listed, the record vouches."""

from __future__ import annotations

import json

import nbformat
import pytest

from zen.course import cli, sweep
from zen.course.notebooks import code_hash


def _notebook(path, cells, tags=None):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    for i, t in (tags or {}).items():
        nb.cells[i].metadata["tags"] = t
    nbformat.write(nb, path)
    return path


@pytest.fixture
def claims(tmp_path):
    """A notebook whose second claim fails for seed 2 and whose third fails with two threads."""
    folder = tmp_path / "book"
    folder.mkdir()
    return _notebook(
        folder / "claims.ipynb",
        [
            "import os\nimport zen",
            "assert zen.seed_offset() != 2, 'seed two breaks it'",
            "threads = int(os.environ['OMP_NUM_THREADS'])\n"
            "assert threads == 1, f'{threads} threads'",
            "raise AssertionError('expected: tagged raises-exception')",
            "print('the last cell still runs')",
        ],
        tags={3: ["raises-exception"]},
    )


def test_sweep_lists_every_failing_claim_of_every_pair(claims):
    seen = []
    results = sweep.sweep(
        [claims], seeds=[0, 2], threads=[1, 2], cores=2, timeout=60, on_result=seen.append
    )
    assert len(results) == len(seen) == 4
    by = {(r.seed, r.threads): r for r in results}
    assert by[0, 1].passed and by[0, 1].summary == "pass"
    assert by[2, 1].failures == [
        "cell 2 `assert zen.seed_offset() != 2, 'seed two breaks it'`: "
        "AssertionError: seed two breaks it"
    ]
    assert len(by[0, 2].failures) == 1 and "cell 3" in by[0, 2].failures[0]
    assert "AssertionError: 2 threads" in by[0, 2].failures[0]
    assert len(by[2, 2].failures) == 2  # both claims fail: execution went on after the first
    text = sweep.table(results)
    assert "claims.ipynb" in text and text.count("FAIL") == 3  # three failing pairs in the row
    assert len(text.splitlines()) == 2 + 1 + 4  # header, row, blank, one line per failing claim
    assert "[seed 2, 2 thread(s)] cell 3" in text


def test_record_vouches_only_for_the_swept_code(claims, monkeypatch):
    monkeypatch.setattr(sweep, "REQUIRED_SEEDS", (0, 1))
    monkeypatch.setattr(sweep, "REQUIRED_THREADS", (1,))
    record_path = claims.parent / sweep.RECORD_NAME
    assert sweep.sweep_problems(claims) == [f"never swept: run `zen sweep {claims}`"]

    ok = [sweep.PairResult(claims, 0, 1, [], 1.0), sweep.PairResult(claims, 1, 1, [], 1.0)]
    sweep.update_record(record_path, ok[:1])
    assert sweep.sweep_problems(claims) == ["seed1-threads1 was not swept"]
    sweep.update_record(
        record_path, [sweep.PairResult(claims, 1, 1, ["cell 2: AssertionError"], 1.0)]
    )
    assert sweep.sweep_problems(claims) == ["seed1-threads1 failed: cell 2: AssertionError"]
    sweep.update_record(record_path, ok[1:])
    assert sweep.sweep_problems(claims) == []
    record = json.loads(record_path.read_text())
    assert record["claims.ipynb"]["code_hash"] == code_hash(nbformat.read(claims, as_version=4))

    nb = nbformat.read(claims, as_version=4)
    nb.cells[1].source = "assert True"  # an edit to a claim: the old results no longer count
    nbformat.write(nb, claims)
    assert sweep.sweep_problems(claims) == [
        f"code changed since the last sweep: run `zen sweep {claims}`"
    ]
    sweep.update_record(record_path, ok[:1])
    assert sweep.sweep_problems(claims) == [
        "seed1-threads1 was not swept"
    ]  # old pairs were dropped


def test_record_skips_notebooks_outside_its_folder(claims, tmp_path):
    elsewhere = _notebook(tmp_path / "other.ipynb", ["1"])
    skipped = sweep.update_record(
        claims.parent / sweep.RECORD_NAME, [sweep.PairResult(elsewhere, 0, 1, [], 1.0)]
    )
    assert skipped == [elsewhere]


def test_a_kernel_that_dies_is_a_failure(tmp_path):
    path = _notebook(tmp_path / "dies.ipynb", ["import os\nos._exit(1)", "print('never')"])
    result = sweep.run_pair(path, 0, 1, timeout=60)
    assert not result.passed and "the kernel died in cell 1" in result.failures[0]


def test_cli_sweep_exit_status_and_record(claims, capsys, monkeypatch):
    monkeypatch.chdir(claims.parent.parent)
    assert cli.main(["sweep", str(claims), "--seeds", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 passed, 0 failed" in out and (claims.parent / sweep.RECORD_NAME).exists()
    assert cli.main(["sweep", str(claims), "--seeds", "2", "--threads", "1", "--no-record"]) == 1
    assert "seed two breaks it" in capsys.readouterr().out
    record = json.loads((claims.parent / sweep.RECORD_NAME).read_text())
    assert list(record["claims.ipynb"]["results"]) == [
        "seed0-threads1"
    ]  # --no-record wrote nothing


@pytest.mark.parametrize(
    "text, expected", [("0-4", [0, 1, 2, 3, 4]), ("1,2", [1, 2]), ("0-2,7,1", [0, 1, 2, 7])]
)
def test_parse_ints(text, expected):
    assert sweep.parse_ints(text, "seeds") == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("a", "numbers or ranges"),
        ("3-1", "runs backwards"),
        ("", "numbers"),
        ("0,1", "threads must be at least 1"),
    ],
)
def test_parse_ints_rejects_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        sweep.parse_ints(text, "threads")


def test_cli_rejects_bad_seeds(capsys):
    assert cli.main(["sweep", "--seeds", "x"]) == 2
    assert "seeds must be numbers or ranges" in capsys.readouterr().err


def test_sweep_rejects_empty_input(claims):
    with pytest.raises(ValueError, match="at least one notebook"):
        sweep.sweep([claims], seeds=[], threads=[1])
