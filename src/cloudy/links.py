"""Monitors, links and exit signals: how processes learn of each other's end.

Cloud Haskell's (and Erlang's) rules: a monitor delivers a
`ProcessMonitorNotification` (or, for a node, a `NodeMonitorNotification`); a link
— one-way, as in Cloud Haskell — raises `ProcessLinkException` in the linker when
the linked process ends abnormally; `exit` raises `ProcessExitException` in its
target, which may catch it; `kill` ends its target unconditionally; `die` and
`terminate` end the caller.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast, overload

from .errors import ProcessExitException, ProcessTerminationException
from .identity import MonitorRef, NodeId, ProcessId
from .node import current_node, current_process

__all__ = [
    "catch_exit",
    "die",
    "exit",
    "kill",
    "link",
    "monitor",
    "monitor_node",
    "terminate",
    "unlink",
    "unmonitor",
    "unmonitor_node",
]

T = TypeVar("T")


def monitor(pid: ProcessId) -> MonitorRef:
    """Be told with a `ProcessMonitorNotification` when *pid* ends.

    The reason is `DiedUnknownId` if *pid* does not exist (or has already ended),
    `DiedDisconnect` if the connection to its node is lost or cannot be made.
    """
    return current_node().monitors.monitor(current_process(), pid)


def unmonitor(ref: MonitorRef) -> None:
    """Cancel a monitor (or a node monitor)."""
    monitors = current_node().monitors
    monitors.unmonitor(current_process(), ref)
    monitors.unmonitor_node(ref)


def link(pid: ProcessId) -> None:
    """When *pid* ends abnormally, raise `ProcessLinkException` in the caller.

    Links are one-way, as in Cloud Haskell. Linking to a process that does not
    exist raises the exception (reason `DiedUnknownId`) at once.
    """
    current_node().monitors.monitor(current_process(), pid, link=True)


def unlink(pid: ProcessId) -> None:
    """Remove the link to *pid*."""
    current_node().monitors.unlink(current_process(), pid)


def monitor_node(node: NodeId) -> MonitorRef:
    """Be told with a `NodeMonitorNotification` when the connection to *node* is lost."""
    return current_node().monitors.monitor_node(current_process(), node)


def unmonitor_node(ref: MonitorRef) -> None:
    """Cancel a node monitor."""
    current_node().monitors.unmonitor_node(ref)


def exit(pid: ProcessId, reason: Any) -> None:
    """Raise `ProcessExitException(sender, reason)` in *pid*, which may catch it."""
    current_node().exit(current_process().pid, pid, reason, kill=False)


def die(reason: Any) -> NoReturn:
    """End the calling process with *reason*: raises `ProcessExitException` from itself,
    which its monitors and links see as the reason (Cloud Haskell's ``die``)."""
    raise ProcessExitException(current_process().pid, reason)


def terminate() -> NoReturn:
    """End the calling process: raises `ProcessTerminationException` (Cloud Haskell's
    ``terminate``); it ends abnormally unless it catches that."""
    raise ProcessTerminationException()


def kill(pid: ProcessId, reason: str) -> None:
    """End *pid* unconditionally; its monitors see `DiedException` with *reason*."""
    current_node().exit(current_process().pid, pid, reason, kill=True)


@overload
async def catch_exit(
    action: Callable[[], Awaitable[T]], handler: Callable[[ProcessId, Any], Awaitable[T]]
) -> T: ...
@overload
async def catch_exit(
    action: Callable[[], Awaitable[T]], handler: Callable[[ProcessId, Any], T]
) -> T: ...
async def catch_exit(
    action: Callable[[], Awaitable[T]], handler: Callable[[ProcessId, Any], Any]
) -> T:
    """Run *action*; if an exit signal arrives meanwhile, return ``handler(sender, reason)``."""
    try:
        return await action()
    except ProcessExitException as e:
        result = handler(e.sender, e.reason)
        if inspect.isawaitable(result):
            result = await result
        return cast(T, result)
