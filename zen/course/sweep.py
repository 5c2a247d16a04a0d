"""Sweeping a notebook over seeds and thread counts: claims that hold for every draw.

A chapter's asserts are its claims. ``zen sweep book --seeds 0-4 --threads 1,2`` re-executes
each notebook in a fresh kernel under every pair (``ZEN_SEED=s``, ``OMP_NUM_THREADS=t``),
without writing outputs, and keeps running after a failing cell so that every failing claim
is listed, not only the first. Pairs run in parallel while the cores allow (a pair with
``t`` threads takes ``t`` cores).

The result of each pair is recorded in ``book/_sweep.json`` against the code hash of the
notebook it ran (:func:`zen.course.notebooks.code_hash`)::

    {"attention.ipynb": {"code_hash": "…",
                         "results": {"seed0-threads1": "pass",
                                     "seed1-threads1": "cell 12: AssertionError: …"}}}

:func:`sweep_problems` tells when a notebook's current code has no record with every
required pair passing; the freshness test fails on it, so no chapter can change without its
claims being swept again.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat

from zen.course.notebooks import code_hash, run

#: the draws every book notebook must pass: seeds 0–4, one and two threads
REQUIRED_SEEDS = (0, 1, 2, 3, 4)
REQUIRED_THREADS = (1, 2)
RECORD_NAME = "_sweep.json"
PASS = "pass"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def pair_key(seed: int, threads: int) -> str:
    """The record's name for one draw: ``seed3-threads2``."""
    return f"seed{seed}-threads{threads}"


def parse_ints(text: str, what: str) -> list[int]:
    """``"0-4"`` → ``[0, 1, 2, 3, 4]``; ``"1,2"`` → ``[1, 2]``; ``"0-2,7"`` → ``[0, 1, 2, 7]``."""
    values: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise ValueError(f"{what} must be numbers or ranges like '0-4' or '1,2', got {text!r}")
        lo, hi = int(match.group(1)), int(match.group(2) or match.group(1))
        if hi < lo:
            raise ValueError(f"{what}: range {part!r} runs backwards")
        values += [v for v in range(lo, hi + 1) if v not in values]
    if what == "threads" and 0 in values:
        raise ValueError("threads must be at least 1, got 0")
    return values


@dataclass
class PairResult:
    notebook: Path
    seed: int
    threads: int
    failures: list[str]
    seconds: float

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def summary(self) -> str:
        return PASS if self.passed else "; ".join(self.failures)


def _failing_line(traceback: list[str]) -> str:
    """The source line marked ``---->`` in the innermost frame of a notebook cell's traceback."""
    for frame in reversed(traceback):
        for line in _ANSI.sub("", frame).splitlines():
            match = re.match(r"\s*-+>\s*\d+\s*(.*)", line)
            if match:
                return match.group(1).strip()
    return ""


def failures_of(nb: nbformat.NotebookNode) -> list[str]:
    """One line per error raised in an executed notebook, outside ``raises-exception`` cells."""
    found = []
    number = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        number += 1
        if "raises-exception" in cell.metadata.get("tags", []):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                message = str(out.get("evalue", "")).strip().splitlines()
                line = _failing_line(out.get("traceback", []))
                where = f"cell {number}" + (f" `{line}`" if line else "")
                found.append(
                    f"{where}: {out.get('ename')}: {message[0] if message else ''}".rstrip(": ")
                )
    return found


def run_pair(path: Path, seed: int, threads: int, timeout: int = 900) -> PairResult:
    """Execute ``path`` once with ``ZEN_SEED=seed`` and ``threads`` threads; list what failed."""
    env = {"ZEN_SEED": str(seed), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    try:
        nb = nbformat.read(path, as_version=4)
        failures = failures_of(
            run(
                nb,
                path.parent,
                env=env,
                timeout=timeout,
                allow_errors=True,
                interrupt_on_timeout=True,
            )
        )
    except Exception as err:  # the kernel died or could not start
        failures = [f"the run broke off: {type(err).__name__}: {str(err).strip().splitlines()[0]}"]
    return PairResult(path, seed, threads, failures, time.perf_counter() - start)


class _Cores:
    """A counter of free cores: a pair with ``t`` threads waits until ``t`` are free."""

    def __init__(self, total: int) -> None:
        self.total, self.free = total, total
        self.changed = threading.Condition()

    def take(self, n: int) -> int:
        n = min(n, self.total)
        with self.changed:
            self.changed.wait_for(lambda: self.free >= n)
            self.free -= n
        return n

    def give(self, n: int) -> None:
        with self.changed:
            self.free += n
            self.changed.notify_all()


def sweep(
    paths: Sequence[Path],
    seeds: Iterable[int],
    threads: Iterable[int],
    cores: int | None = None,
    timeout: int = 900,
    on_result: Callable[[PairResult], None] | None = None,
) -> list[PairResult]:
    """Run every (notebook, seed, threads) pair, in parallel while ``cores`` allow."""
    seeds, threads = list(seeds), list(threads)
    if not paths or not seeds or not threads:
        raise ValueError("sweep needs at least one notebook, one seed and one thread count")
    cores = cores or os.cpu_count() or 1
    if cores < 1:
        raise ValueError(f"cores must be at least 1, got {cores}")
    pool = _Cores(cores)
    lock = threading.Lock()

    def one(job: tuple[Path, int, int]) -> PairResult:
        path, seed, t = job
        taken = pool.take(t)
        try:
            result = run_pair(path, seed, t, timeout)
        finally:
            pool.give(taken)
        if on_result:
            with lock:
                on_result(result)
        return result

    jobs = [(p, s, t) for p in paths for t in threads for s in seeds]
    with ThreadPoolExecutor(max_workers=cores) as executor:
        return list(executor.map(one, jobs))


# ---------------------------------------------------------------- the record


def read_record(path: Path) -> dict:
    """The sweep record at ``path`` (empty when there is none yet)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def update_record(record_path: Path, results: Iterable[PairResult]) -> list[Path]:
    """Merge ``results`` into the record; return the notebooks that were outside its folder.

    A notebook whose code hash changed loses its old results: they were for other code.
    """
    record = read_record(record_path)
    folder = record_path.parent.resolve()
    skipped: list[Path] = []
    for result in results:
        path = result.notebook.resolve()
        if path.parent != folder:
            skipped.append(result.notebook)
            continue
        digest = code_hash(nbformat.read(path, as_version=4))
        entry = record.get(path.name)
        if entry is None or entry.get("code_hash") != digest:
            entry = record[path.name] = {"code_hash": digest, "results": {}}
        entry["results"][pair_key(result.seed, result.threads)] = result.summary
        entry["results"] = dict(sorted(entry["results"].items()))
    record_path.write_text(
        json.dumps(dict(sorted(record.items())), indent=1, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    return sorted(set(skipped))


def sweep_problems(path: Path, record: dict | None = None) -> list[str]:
    """Why the sweep record does not vouch for ``path``'s current code (empty when it does)."""
    path = Path(path)
    if record is None:
        record = read_record(path.parent / RECORD_NAME)
    entry = record.get(path.name)
    if entry is None:
        return [f"never swept: run `zen sweep {path}`"]
    if entry.get("code_hash") != code_hash(nbformat.read(path, as_version=4)):
        return [f"code changed since the last sweep: run `zen sweep {path}`"]
    problems = []
    for seed in REQUIRED_SEEDS:
        for threads in REQUIRED_THREADS:
            got = entry["results"].get(pair_key(seed, threads))
            if got is None:
                problems.append(f"{pair_key(seed, threads)} was not swept")
            elif got != PASS:
                problems.append(f"{pair_key(seed, threads)} failed: {got}")
    return problems


def table(results: Sequence[PairResult]) -> str:
    """Notebook × (seed, threads) → ``pass``/``FAIL``, then one line per failing claim."""
    pairs = sorted({(r.seed, r.threads) for r in results}, key=lambda p: (p[1], p[0]))
    names = sorted({str(r.notebook) for r in results})
    by = {(str(r.notebook), r.seed, r.threads): r for r in results}
    heads = [f"s{s}/t{t}" for s, t in pairs]
    width = max(len(n) for n in names)
    lines = [" ".join([f"{'notebook':<{width}}"] + [f"{h:>6}" for h in heads])]
    for name in names:
        cells = [
            ("pass" if by[(name, s, t)].passed else "FAIL") if (name, s, t) in by else "-"
            for s, t in pairs
        ]
        lines.append(" ".join([f"{name:<{width}}"] + [f"{c:>6}" for c in cells]))
    failed = [r for r in results if not r.passed]
    if failed:
        lines.append("")
        for r in sorted(failed, key=lambda r: (str(r.notebook), r.threads, r.seed)):
            for failure in r.failures:
                lines.append(f"{r.notebook} [seed {r.seed}, {r.threads} thread(s)] {failure}")
    return "\n".join(lines)
