"""Cloud Haskell's combinators over the primitives: `call_local`, `spawn_async`
(→ `DidSpawn`), `catches_exit`.

They use only the public API: each is what a user could write, written once.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from .closure import Closure
from .errors import CloudyError, ProcessExitException
from .identity import NodeId, ProcessId
from .links import kill, monitor
from .message import Message
from .messages import DiedNormal, ProcessMonitorNotification
from .process import get_self_pid, match_if, receive_wait, send, spawn, spawn_local

__all__ = ["DidSpawn", "SpawnRef", "call_local", "catches_exit", "spawn_async"]

T = TypeVar("T")
_refs = itertools.count(1)


async def call_local(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(*args)`` in a new local process and return its result (or raise its
    exception). An exit signal that reaches the caller meanwhile ends the other process
    too (Cloud Haskell's ``callLocal``): the work is the caller's own, isolated in a
    process of its own (its mailbox, its links)."""
    outcome: dict[str, Any] = {}

    async def body() -> None:
        try:
            outcome["value"] = await fn(*args)
        except BaseException as e:
            outcome["error"] = e
            raise

    pid = spawn_local(body)
    ref = monitor(pid)
    try:
        note = await receive_wait(
            match_if(ProcessMonitorNotification, lambda n: n.ref == ref, _same)
        )
    except BaseException:
        kill(pid, "call_local: its caller ended")
        raise
    if "error" in outcome:
        raise outcome["error"]
    if not isinstance(note.reason, DiedNormal):
        raise CloudyError(f"call_local: the process ended ({note.reason!r})")
    return cast(T, outcome["value"])


class SpawnRef(Message):
    """What `spawn_async` returns; the `DidSpawn` that follows carries it."""

    id: int


class DidSpawn(Message):
    """The outcome of a `spawn_async`: *pid*, or *error* saying why there is none (an
    unreachable node, an unknown closure)."""

    ref: SpawnRef
    pid: ProcessId | None
    error: str | None = None


def spawn_async(node: NodeId, clo: Closure) -> SpawnRef:
    """Start *clo* on *node* without waiting: a `DidSpawn` with the returned ref
    arrives in the caller's mailbox (Cloud Haskell's ``spawnAsync``)."""
    ref, caller = SpawnRef(next(_refs)), get_self_pid()

    async def spawner() -> None:
        try:
            pid = await spawn(node, clo)
        except CloudyError as e:
            send(caller, DidSpawn(ref, None, f"{type(e).__name__}: {e}"))
        else:
            send(caller, DidSpawn(ref, pid))

    spawn_local(spawner)
    return ref


async def catches_exit(
    action: Callable[[], Awaitable[T]],
    *handlers: tuple[type | tuple[type, ...], Callable[[ProcessId, Any], Any]],
) -> T:
    """Run *action*; if an exit signal arrives meanwhile, the first handler whose type
    matches its reason is called with ``(sender, reason)`` and its result returned; if
    none matches, the signal goes on (Cloud Haskell's ``catchesExit``)."""
    try:
        return await action()
    except ProcessExitException as e:
        for kind, handler in handlers:
            if isinstance(e.reason, kind):
                result = handler(e.sender, e.reason)
                if inspect.isawaitable(result):
                    result = await result
                return cast(T, result)
        raise


def _same(x: Any) -> Any:
    return x
