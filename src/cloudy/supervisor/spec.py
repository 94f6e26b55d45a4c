"""What a supervisor is told and answers: child specs, reports, errors and the run-time API.

`cloudy.supervisor` runs the supervisor process; this module holds the data it works
on and the calls other processes make to it (`start_child`, `terminate_child`,
`restart_child`, `delete_child`, `which_children`, `count_children`). Each call is a
request message answered by the supervisor; a refusal, or a supervisor that is not
running, raises `SupervisorError` in the caller.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import (
    Closure,
    CloudyError,
    DiedNormal,
    DiedReason,
    Match,
    Message,
    MonitorRef,
    NodeId,
    ProcessId,
    ProcessMonitorNotification,
    get_self_pid,
    link,
    match_if,
    monitor,
    receive_timeout,
    receive_wait,
    send,
    unmonitor,
)

__all__ = [
    "MAX_INTENSITY_REASON",
    "RETRY_AFTER",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ChildState",
    "ChildTable",
    "Kind",
    "Restart",
    "Strategy",
    "SupervisorCall",
    "SupervisorError",
    "SupervisorReply",
    "SupervisorStarted",
    "await_started",
    "count_children",
    "delete_child",
    "describe",
    "is_normal_end",
    "parent_supervisor",
    "restart_child",
    "run_child",
    "same",
    "start_child",
    "terminate_child",
    "validate",
    "which_children",
]

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
Kind = Literal["worker", "supervisor"]
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS = ("permanent", "transient", "temporary")


class SupervisorError(CloudyError):
    """A supervisor refused a request, could not start, or gave up (its message says which)."""


@dataclass(frozen=True)
class ChildSpec:
    """How a supervisor starts and treats one child (OTP's child specification).

    *start* is either a local async function, started with ``spawn_local(start, *args)``,
    or a `Closure`, started with ``spawn(node, start)`` on *node* (a `NodeId`, or a
    list of them tried in order). *restart*: ``"permanent"`` children are always
    restarted, ``"transient"`` ones only after an abnormal end, ``"temporary"`` ones
    never (and their spec is dropped when they end). *shutdown*: seconds to wait after
    ``exit(pid, "shutdown")`` before `kill` (``math.inf``: wait for ever), or
    ``"brutal_kill"`` to kill at once. *kind* is what `count_children` counts.

    Specs are passed to the supervisor by reference, so `start_child` works only from
    the supervisor's own node (a local function cannot cross the wire).
    """

    id: str
    start: Callable[..., Awaitable[Any]] | Closure
    args: tuple[Any, ...] = ()
    node: NodeId | Sequence[NodeId] | None = None
    restart: Restart = "permanent"
    shutdown: float | Literal["brutal_kill"] = 5.0
    kind: Kind = "worker"
    nodes: tuple[NodeId, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nodes: tuple[NodeId, ...] = ()
        if isinstance(self.node, NodeId):
            nodes = (self.node,)
        elif self.node is not None:
            nodes = tuple(self.node)
        object.__setattr__(self, "nodes", nodes)
        if isinstance(self.start, Closure):
            if not nodes:
                raise SupervisorError(f"child {self.id!r}: a Closure needs a node to run on")
            if self.args:
                raise SupervisorError(f"child {self.id!r}: a Closure carries its own args")
        elif not callable(self.start):
            raise SupervisorError(f"child {self.id!r}: start must be a function or a Closure")
        elif nodes:
            raise SupervisorError(f"child {self.id!r}: a local function takes no node")
        if self.restart not in RESTARTS:
            raise SupervisorError(f"child {self.id!r}: restart must be one of {RESTARTS}")
        if self.kind not in ("worker", "supervisor"):
            raise SupervisorError(f"child {self.id!r}: kind must be 'worker' or 'supervisor'")
        if self.shutdown != "brutal_kill" and not (
            isinstance(self.shutdown, int | float) and self.shutdown >= 0
        ):
            raise SupervisorError(
                f"child {self.id!r}: shutdown must be seconds >= 0, math.inf or 'brutal_kill'"
            )

    @property
    def remote(self) -> bool:
        return isinstance(self.start, Closure)


def validate(children: Sequence[ChildSpec], strategy: str, intensity: int, period: float) -> None:
    """Raise `SupervisorError` for flags or a child list a supervisor cannot run with."""
    if strategy not in STRATEGIES:
        raise SupervisorError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    if not isinstance(intensity, int) or intensity < 0:
        raise SupervisorError(f"intensity must be an int >= 0, not {intensity!r}")
    if not (period > 0 and math.isfinite(period)):
        raise SupervisorError(f"period must be a number of seconds > 0, not {period!r}")
    seen: set[str] = set()
    for spec in children:
        if not isinstance(spec, ChildSpec):
            raise SupervisorError(f"not a ChildSpec: {spec!r}")
        if spec.id in seen:
            raise SupervisorError(f"duplicate child id {spec.id!r}")
        seen.add(spec.id)


MAX_INTENSITY_REASON = "shutdown: reached max restart intensity"
# Seconds between attempts to restart a remote child none of whose nodes could be reached.
RETRY_AFTER = 0.5
SHUTDOWN_EXIT = re.compile(r"ProcessExitException: exit from \S+: '(shutdown|normal)'")


@dataclass(eq=False)
class ChildState:
    spec: ChildSpec
    pid: ProcessId | None = None
    ref: MonitorRef | None = None
    node_index: int = 0  # in spec.nodes: where it runs, or ran last
    retry_at: float | None = None  # waiting to be restarted on a node that can be reached


def is_normal_end(reason: DiedReason) -> bool:
    """A normal end for a transient child: returned, or an uncaught exit "shutdown"."""
    if isinstance(reason, DiedNormal):
        return True
    return bool(SHUTDOWN_EXIT.fullmatch(getattr(reason, "message", "")))


# (a local child's pid, its supervisor's), set in the child's own context by `run_child`
_PARENT: ContextVar[tuple[ProcessId, ProcessId] | None] = ContextVar("supervisor", default=None)


async def run_child(sup: ProcessId, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """A local child: linked to its supervisor (one-way), so it dies if that is killed."""
    link(sup)
    _PARENT.set((get_self_pid(), sup))
    return await fn(*args)


def parent_supervisor() -> ProcessId | None:
    """The supervisor that started the calling process as a local child, if one did."""
    found = _PARENT.get()
    return found[1] if found is not None and found[0] == get_self_pid() else None


class ChildInfo(Message):
    """One child as `which_children` reports it: *pid* is None while it is not running."""

    id: str
    pid: ProcessId | None
    restart: str
    kind: str = "worker"


class ChildCounts(Message):
    """`count_children`: specs held, children running, and specs of each kind."""

    specs: int
    active: int
    supervisors: int
    workers: int


def describe(op: str, children: Sequence[ChildState]) -> list[ChildInfo] | ChildCounts:
    """The answer to `which_children` or `count_children`."""
    if op == "which_children":
        return [ChildInfo(c.spec.id, c.pid, c.spec.restart, c.spec.kind) for c in children]
    sups = sum(c.spec.kind == "supervisor" for c in children)
    active = sum(c.pid is not None for c in children)
    n = len(children)
    return ChildCounts(specs=n, active=active, supervisors=sups, workers=n - sups)


class ChildTable:
    """A supervisor's children, and its answers to the run-time API's requests."""

    me: ProcessId
    children: list[ChildState]

    async def start(self, child: ChildState, first: int = 0) -> str | None:
        raise NotImplementedError

    async def terminate(self, child: ChildState) -> None:
        raise NotImplementedError

    def find(self, child_id: str) -> ChildState:
        for child in self.children:
            if child.spec.id == child_id:
                return child
        raise SupervisorError(f"no child {child_id!r} in supervisor {self.me}")

    async def handle(self, op: str, arg: Any) -> Any:
        if op in ("which_children", "count_children"):
            return describe(op, self.children)
        if op == "start_child":
            if any(c.spec.id == arg.id for c in self.children):
                raise SupervisorError(f"a child {arg.id!r} already exists in {self.me}")
            child = ChildState(arg)
            if (why := await self.start(child)) is not None:
                raise SupervisorError(f"child {arg.id!r} could not be started: {why}")
            self.children.append(child)
            return child.pid
        child = self.find(str(arg))
        if op == "terminate_child":
            await self.terminate(child)
            if child.spec.restart == "temporary":
                self.children.remove(child)
            return None
        if child.pid is not None or child.retry_at is not None:
            raise SupervisorError(f"child {child.spec.id!r} is running: terminate it first")
        if op == "restart_child":
            if (why := await self.start(child)) is not None:
                raise SupervisorError(f"child {child.spec.id!r} could not be started: {why}")
            return child.pid
        if op == "delete_child":
            self.children.remove(child)
            return None
        raise SupervisorError(f"unknown supervisor request {op!r}")

    async def answer(self, call: SupervisorCall) -> None:
        try:
            value, error = await self.handle(call.op, call.arg), None
        except SupervisorError as e:
            value, error = None, str(e)
        send(call.reply_to, SupervisorReply(call.ref, value, error))


class SupervisorCall(Message):
    """A run-time API request; answered with a `SupervisorReply` carrying the same ref."""

    ref: MonitorRef
    reply_to: ProcessId
    op: str
    arg: Any = None


class SupervisorReply(Message):
    ref: MonitorRef
    value: Any = None
    error: str | None = None


class SupervisorStarted(Message):
    """Sent by a new supervisor to whoever started it, once its children all started."""

    pid: ProcessId
    error: str | None = None


def same(x: Any) -> Any:
    """A handler that returns the message it is given."""
    return x


async def _call(sup: ProcessId, op: str, arg: Any = None) -> Any:
    ref = monitor(sup)
    send(sup, SupervisorCall(ref, get_self_pid(), op, arg))
    clause = match_if(SupervisorReply, lambda r: r.ref == ref, same)
    answer = await _answer_or_end(sup, ref, clause, "is not running")
    return answer.value


async def _answer_or_end(pid: ProcessId, ref: MonitorRef, clause: Match[Any], what: str) -> Any:
    """The answer *clause* takes from supervisor *pid* (monitored as *ref*), or raise
    `SupervisorError` if it ends first (or answers with an error)."""
    answer = await receive_wait(
        clause, match_if(ProcessMonitorNotification, lambda n: n.ref == ref, same)
    )
    if isinstance(answer, ProcessMonitorNotification):
        raise SupervisorError(f"supervisor {pid} {what} ({answer.reason!r})")
    unmonitor(ref)
    await receive_timeout(0, match_if(ProcessMonitorNotification, lambda n: n.ref == ref, same))
    if answer.error is not None:
        raise SupervisorError(answer.error)
    return answer


async def await_started(pid: ProcessId) -> None:
    """Wait for the new supervisor *pid* to report its children started; raise if not."""
    ref = monitor(pid)
    clause = match_if(SupervisorStarted, lambda s: s.pid == pid, same)
    await _answer_or_end(pid, ref, clause, "ended while starting")


async def start_child(sup: ProcessId, spec: ChildSpec) -> ProcessId:
    """Add *spec* to *sup* and start it (after the others); its pid.

    Raises if a child with that id exists (running or not) or if it cannot be started.
    """
    if not isinstance(spec, ChildSpec):
        raise SupervisorError(f"not a ChildSpec: {spec!r}")
    pid: ProcessId = await _call(sup, "start_child", spec)
    return pid


async def terminate_child(sup: ProcessId, child_id: str) -> None:
    """Stop child *child_id* as the supervisor would (its spec stays, unless temporary)."""
    await _call(sup, "terminate_child", child_id)


async def restart_child(sup: ProcessId, child_id: str) -> ProcessId:
    """Start again a child that was terminated (raises if it is running or unknown)."""
    pid: ProcessId = await _call(sup, "restart_child", child_id)
    return pid


async def delete_child(sup: ProcessId, child_id: str) -> None:
    """Forget the spec of a terminated child (raises if it is running or unknown)."""
    await _call(sup, "delete_child", child_id)


async def which_children(sup: ProcessId) -> list[ChildInfo]:
    """Every child of *sup*, in start order."""
    children: list[ChildInfo] = await _call(sup, "which_children")
    return children


async def count_children(sup: ProcessId) -> ChildCounts:
    """How many specs *sup* holds, how many children run, and of which kinds."""
    counts: ChildCounts = await _call(sup, "count_children")
    return counts
