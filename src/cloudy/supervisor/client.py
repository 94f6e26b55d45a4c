"""The run-time API, called from any process on the supervisor's node: each call is
one request message (`protocol`), answered by the supervisor; a refusal, or a
supervisor that is not running, raises `SupervisorError` in the caller. And
`start_supervisor`, which starts one and waits until its children have started."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import (
    Match,
    MonitorRef,
    ProcessId,
    ProcessMonitorNotification,
    get_self_pid,
    link,
    match_if,
    monitor,
    receive_timeout,
    receive_wait,
    send,
    spawn_local,
    unmonitor,
)
from .protocol import (
    CountChildren,
    DeleteChild,
    Reply,
    Request,
    RestartChild,
    StartChild,
    SupervisorStarted,
    TerminateChild,
    WhichChildren,
)
from .server import run_supervisor
from .spec import ChildCounts, ChildInfo, ChildSpec, Strategy, SupervisorError, validate

__all__ = [
    "count_children",
    "delete_child",
    "restart_child",
    "start_child",
    "start_supervisor",
    "terminate_child",
    "which_children",
]


async def start_supervisor(
    children: Sequence[ChildSpec],
    strategy: Strategy = "one_for_one",
    intensity: int = 1,
    period: float = 5.0,
    *,
    link: bool = True,
) -> ProcessId:
    """Start a supervisor of *children* on this node; its pid once every child started.

    Raises `SupervisorError` if the arguments are wrong or a child cannot be started
    (the ones already started are stopped again). With *link* (OTP's ``start_link``)
    the caller is linked to the supervisor, and the supervisor stops when the caller
    ends.
    """
    validate(children, strategy, intensity, period)
    me = get_self_pid()
    parent = me if link else None
    pid = spawn_local(run_supervisor, list(children), strategy, intensity, period, parent, me)
    ref = monitor(pid)
    started = match_if(SupervisorStarted, lambda s: s.pid == pid)
    await _answer_or_end(pid, ref, started, "ended while starting")
    if link:
        _link(pid)
    return pid


_link = link  # start_supervisor's `link` argument hides it


async def start_child(sup: ProcessId, spec: ChildSpec) -> ProcessId:
    """Add *spec* to *sup* and start it (after the others); its pid.

    Raises if a child with that id exists (running or not) or if it cannot be started.
    """
    if not isinstance(spec, ChildSpec):
        raise SupervisorError(f"not a ChildSpec: {spec!r}")
    pid: ProcessId = await _call(sup, StartChild, spec)
    return pid


async def terminate_child(sup: ProcessId, child_id: str) -> None:
    """Stop child *child_id* as the supervisor would (its spec stays, unless temporary)."""
    await _call(sup, TerminateChild, child_id)


async def restart_child(sup: ProcessId, child_id: str) -> ProcessId:
    """Start again a child that was terminated (raises if it is running or unknown)."""
    pid: ProcessId = await _call(sup, RestartChild, child_id)
    return pid


async def delete_child(sup: ProcessId, child_id: str) -> None:
    """Forget the spec of a terminated child (raises if it is running or unknown)."""
    await _call(sup, DeleteChild, child_id)


async def which_children(sup: ProcessId) -> list[ChildInfo]:
    """Every child of *sup*, in start order."""
    children: list[ChildInfo] = await _call(sup, WhichChildren)
    return children


async def count_children(sup: ProcessId) -> ChildCounts:
    """How many specs *sup* holds, how many children run, and of which kinds."""
    counts: ChildCounts = await _call(sup, CountChildren)
    return counts


async def _call(sup: ProcessId, request: type[Request], *args: Any) -> Any:
    ref = monitor(sup)
    send(sup, request(ref, get_self_pid(), *args))
    clause = match_if(Reply, lambda r: r.ref == ref)
    answer = await _answer_or_end(sup, ref, clause, "is not running")
    return answer.value


async def _answer_or_end(pid: ProcessId, ref: MonitorRef, clause: Match[Any], what: str) -> Any:
    """The answer *clause* takes from supervisor *pid* (monitored as *ref*), or raise
    `SupervisorError` if it ends first (or answers with an error)."""
    answer = await receive_wait(
        clause, match_if(ProcessMonitorNotification, lambda n: n.ref == ref)
    )
    if isinstance(answer, ProcessMonitorNotification):
        raise SupervisorError(f"supervisor {pid} {what} ({answer.reason!r})")
    unmonitor(ref)
    await receive_timeout(0, match_if(ProcessMonitorNotification, lambda n: n.ref == ref))
    if answer.error is not None:
        raise SupervisorError(answer.error)
    return answer
