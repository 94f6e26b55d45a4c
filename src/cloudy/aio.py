"""Running cloudy on an event loop, and the small OS helpers the tools share.

`run` is what every entry point (the CLI, the backend's ``start_*``, child nodes
in tests) calls: uvloop where it is installed (the ``fast`` extra), else asyncio.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["free_port", "run"]

T = TypeVar("T")


def run(main: Awaitable[T]) -> T:
    """Run *main* to its end on uvloop where installed, else on asyncio's loop."""

    async def wrapper() -> T:
        return await main

    try:
        import uvloop
    except ImportError:
        return asyncio.run(wrapper())
    return uvloop.run(wrapper())


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that was free on *host* a moment ago (TCP by default)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port
