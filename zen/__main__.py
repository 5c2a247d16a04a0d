"""``python -m zen ...`` is the same as the ``zen`` console script."""

from zen.cli import main

raise SystemExit(main())
