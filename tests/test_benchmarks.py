"""Smoke tests for the benchmark scripts: they start, and the attention benchmark runs end to end.

Timings are never asserted (they are measured by the scripts, not tested)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCH.glob("bench_*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_benchmark_script_starts(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_attention_benchmark_runs_and_prints_both_tables() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "bench_attention.py"),
            "--seqs",
            "16",
            "32",
            "--batch",
            "1",
            "--heads",
            "2",
            "--d-head",
            "8",
            "--warmup",
            "0",
            "--reps",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "1. scaled dot-product attention" in done.stdout
        and "2. multi-head attention" in done.stdout
    )
    rows = [
        line.split()
        for line in done.stdout.splitlines()
        if line.strip().split(" ")[0] in ("16", "32")
    ]
    assert [r[0] for r in rows] == ["16", "32", "16", "32"]
