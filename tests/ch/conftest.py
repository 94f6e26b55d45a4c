"""The peer node Cloud Haskell's tests run against, one per test module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from ch_support import COOKIE

from cloudy.testing import NodeProcess


@pytest.fixture(scope="module")
def peer() -> Iterator[NodeProcess]:
    """A node in its own OS process, over TCP, as between two machines (`cut` resets
    TCP connections)."""
    env = {**os.environ, "CLOUDY_LOCAL_SOCKETS": "0"}
    with NodeProcess("ch_funcs", cookie=COOKIE, env=env) as node:
        yield node
