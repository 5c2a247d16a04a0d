"""Executing notebooks and telling fresh outputs from stale ones.

``zen execute book/ch01_optimisation.ipynb`` (or a folder, or nothing for ``book/`` and
``labs/``) runs each notebook top to bottom in a fresh kernel at the default scale and
writes the outputs in place. It records in ``metadata.zen`` a hash of the code cells, so
:func:`freshness_problems` can later tell when code changed after its outputs were made.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import nbformat

#: environment every execution gets: the default scale, no progress-bar widgets in the
#: committed outputs, and a fixed hash seed so set/dict order cannot change results
EXECUTION_ENV = {"ZEN_SCALE": "small", "TQDM_DISABLE": "1", "PYTHONHASHSEED": "0", "ZEN_DEVICE": "cpu"}


def code_hash(nb: nbformat.NotebookNode) -> str:
    """SHA-256 of the sources of the code cells, in order."""
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


@contextmanager
def _environment(extra: dict[str, str]):
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(path: str | Path, timeout: int = 900, env: dict[str, str] | None = None) -> float:
    """Execute the notebook at ``path`` in a fresh kernel, write it back, return seconds taken.

    Cells tagged ``raises-exception`` may raise (lab check cells before the student's work);
    any other error stops execution and is re-raised, leaving the file untouched.
    """
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    start = time.perf_counter()
    with _environment({**EXECUTION_ENV, **(env or {})}):
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent.resolve())}}
        )
        client.execute()
    seconds = time.perf_counter() - start
    used = {**EXECUTION_ENV, **(env or {})}
    nb.metadata["zen"] = {"code_hash": code_hash(nb), "scale": used["ZEN_SCALE"], "device": used["ZEN_DEVICE"]}
    nbformat.write(nb, path)
    return seconds


def freshness_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Reasons why ``nb``'s committed outputs are not one fresh top-to-bottom run (empty if fresh)."""
    problems = []
    recorded = nb.metadata.get("zen", {}).get("code_hash")
    if recorded is None:
        problems.append("no metadata.zen.code_hash: the notebook was never run by `zen execute`")
    elif recorded != code_hash(nb):
        problems.append("code cells changed after the outputs were made (code hash differs): run `zen execute` on it")
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    counts = [c.execution_count for c in code_cells]
    if any(c is None for c in counts):
        missing = [i for i, c in enumerate(code_cells) if c.execution_count is None]
        problems.append(f"code cells {missing} have no execution count (never run)")
    elif counts != list(range(1, len(counts) + 1)):
        problems.append(f"execution counts are {counts}, not 1..{len(counts)} in order")
    if code_cells and not any(c.outputs for c in code_cells):
        problems.append("no code cell has any output")
    return problems


def find_notebooks(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into a sorted list of ``.ipynb`` files.

    Folders skip checkpoints and instructor lab sources (``labs/source/``): those are never
    executed for committed outputs; ``zen lab release`` and the lab gates run them.
    """
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += [
                q for q in sorted(p.rglob("*.ipynb"))
                if ".ipynb_checkpoints" not in q.parts and q.resolve().parent.parts[-2:] != ("labs", "source")
            ]
        elif p.suffix == ".ipynb" and p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"not a notebook or folder: {p}")
    return found
