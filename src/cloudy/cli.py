"""The ``cloudy`` command (filled in by the experiment)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    print("cloudy: no commands yet")
    return 0
