"""``python -m cloudy.testing MODULE HOST PORT --cookie C``: a node for `NodeProcess`."""

from .nodes import main

main()
