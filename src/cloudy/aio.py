"""Running cloudy on an event loop.

`run` is what every entry point (the CLI, the backend's ``start_*``, child nodes
in tests) calls: uvloop where it is installed (the ``fast`` extra), else asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["run"]

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
