"""Kernel start-up file for executed notebooks: ``TQDM_DISABLE=1`` hides every progress bar.

tqdm's notebook bar (what ``tqdm.auto`` picks in Jupyter) always passes ``disable=`` to its
parent itself, so the ``TQDM_DISABLE`` environment variable never reaches it and a bar's first
frame ("0%| | 0/30") would be saved in the committed outputs. :func:`zen.course.notebooks.run`
starts kernels with this file as an IPython start-up script; it makes the variable win.
"""

import os

if os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes"}:
    import tqdm.notebook

    _notebook_init = tqdm.notebook.tqdm_notebook.__init__

    def _disabled_init(self, *args, **kwargs):
        kwargs["disable"] = True
        _notebook_init(self, *args, **kwargs)

    tqdm.notebook.tqdm_notebook.__init__ = _disabled_init
