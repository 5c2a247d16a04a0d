"""Run a notebook's code cells in order in one namespace (no Jupyter needed), keep going past a
failing cell, and print one line per cell: seconds and ok / the error. Usage: run_cells.py NB"""

import json
import os
import sys
import time
import traceback

os.environ.setdefault("MPLBACKEND", "Agg")
path = os.path.abspath(sys.argv[1])
name = os.path.basename(path)
cells = [c for c in json.load(open(path))["cells"] if c["cell_type"] == "code"]
os.chdir(os.path.dirname(path))
ns = {"__name__": "__main__"}
start = time.time()
failed = 0
for i, cell in enumerate(cells, 1):
    src = "".join(cell["source"])
    t = time.time()
    try:
        exec(compile(src, f"{name}:cell{i}", "exec"), ns)
        status = "ok"
    except Exception as err:
        failed += 1
        line = traceback.extract_tb(err.__traceback__)[-1]
        source = (line.line or "").strip()[:120]
        status = (
            f"FAIL {type(err).__name__}: {str(err)[:200]} "
            f"(at {line.filename}:{line.lineno} `{source}`)"
        )
    print(f"[{name}] cell {i:2d} {time.time() - t:7.1f} s  {status}", flush=True)
print(
    f"[{name}] done in {time.time() - start:.0f} s, {failed} failing cell(s) of {len(cells)}",
    flush=True,
)
