"""The course's tooling, apart from the library the chapters build on.

* :mod:`~zen.course.cli` — the ``zen`` command (``doctor``, ``execute``, ``check``, ``sweep``,
  ``lab``);
* :mod:`~zen.course.doctor` — is this machine ready for the course?;
* :mod:`~zen.course.notebooks` — the one notebook runner, and the freshness of committed outputs;
* :mod:`~zen.course.sweep` — re-running notebooks over seeds and thread counts, and its record;
* :mod:`~zen.course.labs` — releasing student labs from instructor sources, and grading them;
* :mod:`~zen.course.labcheck` — the checks that lab notebooks call;
* :mod:`~zen.course.parallel_checks` — the parallelism labs' checks, run in real processes.

The library (everything in ``zen`` outside this package) never imports ``zen.course``.
"""
