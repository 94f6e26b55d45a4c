"""A local child's side of its supervisor: linked to it one way (so that it dies
if the supervisor is killed), and able to ask which supervisor started it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from .. import ProcessId, get_self_pid, link

__all__ = ["parent_supervisor", "run_child"]

# (a local child's pid, its supervisor's), set in the child's own context by `run_child`
_PARENT: ContextVar[tuple[ProcessId, ProcessId] | None] = ContextVar("supervisor", default=None)


async def run_child(sup: ProcessId, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run local child ``fn(*args)`` of supervisor *sup*, linked to it."""
    link(sup)
    _PARENT.set((get_self_pid(), sup))
    return await fn(*args)


def parent_supervisor() -> ProcessId | None:
    """The supervisor that started the calling process as a local child, if one did."""
    found = _PARENT.get()
    return found[1] if found is not None and found[0] == get_self_pid() else None
