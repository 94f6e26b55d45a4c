"""What passes between a supervisor and the processes that call it: one message
type per request of the run-time API, each answered by a `Reply` with its ref, and
`SupervisorStarted`, which a new supervisor sends once its children have started."""

from __future__ import annotations

from typing import Any

from .. import Message, MonitorRef, ProcessId

__all__ = [
    "CountChildren",
    "DeleteChild",
    "Reply",
    "Request",
    "RestartChild",
    "StartChild",
    "SupervisorStarted",
    "TerminateChild",
    "WhichChildren",
]


class Request(Message):
    """A run-time API request: answered to *reply_to* with a `Reply` carrying *ref*."""

    ref: MonitorRef
    reply_to: ProcessId


class WhichChildren(Request):
    """Every child, in start order: a list of `ChildInfo`."""


class CountChildren(Request):
    """How many specs, running children, supervisors and workers: `ChildCounts`."""


class StartChild(Request):
    """Add *spec* (a `ChildSpec`) and start it (after the others): its pid. The spec
    goes by reference (it may hold a local function): from the supervisor's own node."""

    spec: Any


class TerminateChild(Request):
    """Stop child *id* as the supervisor would (its spec stays, unless temporary)."""

    id: str


class RestartChild(Request):
    """Start again child *id*, terminated before: its pid."""

    id: str


class DeleteChild(Request):
    """Forget the spec of child *id*, terminated before."""

    id: str


class Reply(Message):
    """The answer to the request with *ref*: its *value*, or why it was refused."""

    ref: MonitorRef
    value: Any = None
    error: str | None = None


class SupervisorStarted(Message):
    """Sent by a new supervisor to whoever started it, once its children all started."""

    pid: ProcessId
    error: str | None = None
