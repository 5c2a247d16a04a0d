"""``python -m zen ...`` is the same as the ``zen`` console script (the course's command line).

This entry point is the one place outside :mod:`zen.course` that imports it; the library does not.
"""

from zen.course.cli import main

raise SystemExit(main())
