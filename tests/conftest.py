"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from procs import CLOUDY, own_discovery_port


@pytest.fixture
def local() -> Iterator[tuple[list[str], str]]:
    """The start of a `cloudy local` command with a discovery port of its own, and the
    marker that finds its processes; each of them is killed by its PID afterwards."""
    with own_discovery_port() as port:
        yield [*CLOUDY, "local", "--discovery-port", port], f"--discovery-port {port}"
