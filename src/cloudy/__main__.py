"""``python -m cloudy``: the ``cloudy`` command."""

from .cli import main

raise SystemExit(main())
