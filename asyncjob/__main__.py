"""``python -m asyncjob``: the ``asyncjob`` command line."""

from ._cli import main

raise SystemExit(main())
