"""Executing notebooks and telling fresh outputs from stale ones.

``zen execute book/optimisation.ipynb`` (or a folder, or nothing for ``book/`` and
``labs/``) runs each notebook top to bottom in a fresh kernel at the default scale and
writes the outputs in place. It records in ``metadata.zen`` a hash of the code cells, so
:func:`freshness_problems` can later tell when code changed after its outputs were made.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

#: environment every execution gets: the default scale and seed, the CPU, no progress-bar
#: widgets in the outputs, and a fixed hash seed so set/dict order cannot change results
EXECUTION_ENV = {
    "ZEN_SCALE": "small",
    "ZEN_SEED": "0",
    "TQDM_DISABLE": "1",
    "PYTHONHASHSEED": "0",
    "ZEN_DEVICE": "cpu",
}
#: the kernel start-up file that makes ``TQDM_DISABLE`` hide tqdm's notebook bars too
STARTUP = Path(__file__).with_name("startup") / "no_progress_bars.py"


class KernelDied(RuntimeError):
    """The kernel died while running cell ``cell_index`` (0-based).

    ``notebook`` holds the outputs made until then.
    """

    def __init__(self, cell_index: int, notebook: nbformat.NotebookNode) -> None:
        super().__init__(f"the kernel died in cell {cell_index + 1}")
        self.cell_index, self.notebook = cell_index, notebook


def code_hash(nb: nbformat.NotebookNode) -> str:
    """SHA-256 of the sources of the code cells, in order."""
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()


def run(
    nb: nbformat.NotebookNode,
    workdir: str | Path,
    env: dict[str, str] | None = None,
    timeout: int = 900,
    allow_errors: bool = False,
    interrupt_on_timeout: bool = False,
    hooks: Mapping[str, Callable[..., Any]] | None = None,
    preload: Sequence[str] = (),
) -> nbformat.NotebookNode:
    """Execute a copy of ``nb`` top to bottom in a fresh kernel and return it with its outputs.

    The one notebook runner of the course: ``zen execute``, ``zen sweep``, ``zen lab grade`` and
    the lab gates all call it. The kernel gets this process's environment updated with
    :data:`EXECUTION_ENV` and then ``env``; this process's own environment is not touched, so
    several notebooks can run at once from threads. With ``allow_errors`` execution continues
    past failing cells (their errors are in the outputs); otherwise the first error not tagged
    ``raises-exception`` raises ``nbclient.exceptions.CellExecutionError``. ``hooks`` are
    nbclient's cell hooks (``on_cell_start``, ``on_cell_executed``, ...). Outputs are cleared
    before running, with an earlier run's saved widget state; if the kernel dies,
    :class:`KernelDied` carries the outputs made so far.
    ``preload`` names modules the kernel imports as it starts, before any cell's time limit
    runs (the grader's, so that importing PyTorch on a busy machine is not a student's cell).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)  # an earlier run's widget state; this run saves its own
    hooks = dict(hooks or {})
    running = [0]
    user_start = hooks.pop("on_cell_start", None)

    def on_cell_start(cell: nbformat.NotebookNode, cell_index: int) -> None:
        running[0] = cell_index
        if user_start is not None:
            user_start(cell=cell, cell_index=cell_index)

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=allow_errors,
        interrupt_on_timeout=interrupt_on_timeout,
        resources={"metadata": {"path": str(Path(workdir).resolve())}},
        on_cell_start=on_cell_start,
        **hooks,
    )
    with tempfile.TemporaryDirectory(prefix="zen-ipython-") as ipython_dir:
        # IPython runs the scripts in <IPYTHONDIR>/profile_default/startup/ when a kernel starts
        startup = Path(ipython_dir) / "profile_default" / "startup"
        startup.mkdir(parents=True)
        shutil.copy(STARTUP, startup / "00-no-progress-bars.py")
        if preload:
            (startup / "01-preload.py").write_text("".join(f"import {m}\n" for m in preload))
        try:
            client.execute(
                env={**os.environ, **EXECUTION_ENV, "IPYTHONDIR": ipython_dir, **(env or {})}
            )
        except DeadKernelError:
            raise KernelDied(running[0], nb) from None
    return nb


def execute(path: str | Path, timeout: int = 900, env: dict[str, str] | None = None) -> float:
    """Execute the notebook at ``path`` in a fresh kernel, write it back, return seconds taken.

    Cells tagged ``raises-exception`` may raise (lab check cells before the student's work);
    any other error stops execution and is re-raised, leaving the file untouched.
    """
    path = Path(path)
    start = time.perf_counter()
    nb = run(nbformat.read(path, as_version=4), path.parent, env=env, timeout=timeout)
    seconds = time.perf_counter() - start
    used = {**EXECUTION_ENV, **(env or {})}
    nb.metadata["zen"] = {
        "code_hash": code_hash(nb),
        "scale": used["ZEN_SCALE"],
        "device": used["ZEN_DEVICE"],
    }
    nbformat.write(nb, path)
    return seconds


def freshness_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Why ``nb``'s committed outputs are not one fresh top-to-bottom run (empty if fresh)."""
    problems = []
    recorded = nb.metadata.get("zen", {}).get("code_hash")
    if recorded is None:
        problems.append("no metadata.zen.code_hash: the notebook was never run by `zen execute`")
    elif recorded != code_hash(nb):
        problems.append(
            "code cells changed after the outputs were made (code hash differs): "
            "run `zen execute` on it"
        )
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
                q
                for q in sorted(p.rglob("*.ipynb"))
                if ".ipynb_checkpoints" not in q.parts
                and q.resolve().parent.parts[-2:] != ("labs", "source")
            ]
        elif p.suffix == ".ipynb" and p.exists():
            found.append(p)
        else:
            raise FileNotFoundError(f"not a notebook or folder: {p}")
    return found
