"""Root pytest set-up, seen by every notebook nbval collects (book/, labs/) and by tests/.

nbval waits at most 5 s between two messages of a cell's output, a constant it does not expose as
an option. On a loaded 2-core CI machine the status message that ends a long training cell (after
the inline backend has rendered its figures) can take longer than that, and nbval then reports
"Timeout of 5 seconds exceeded waiting for output" for a cell that ran correctly. Give it a minute;
the per-cell limit (``--nbval-cell-timeout``) still bounds a cell that never ends.
"""

from __future__ import annotations

NBVAL_OUTPUT_TIMEOUT_S = 60


def pytest_collection_modifyitems(config, items):
    for item in items:
        if hasattr(item, "output_timeout"):  # an nbval cell
            item.output_timeout = NBVAL_OUTPUT_TIMEOUT_S
