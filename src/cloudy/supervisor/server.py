"""Supervisors: Erlang/OTP's ``supervisor`` behaviour, on cloudy's public API.

A supervisor is a process that starts its children in order, monitors each, and
when one ends applies the child's *restart* type (``permanent``, ``transient``,
``temporary``) and its own *strategy*: ``one_for_one`` restarts that child,
``one_for_all`` stops every other child (in reverse start order) and starts them
all again (in start order), ``rest_for_one`` does so for the children started after
it. More than *intensity* restarts within *period* seconds make it stop all its
children (reverse order) and end with ``SupervisorError("shutdown: reached max
restart intensity")``, which is what its monitors and links see.

A child may be a supervisor (`supervisor_child`): trees. Where this differs from OTP
(one-way links, remote children, exit reasons) is told in the README's "Supervisors".
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

from .. import (
    Closure,
    CloudyError,
    DiedDisconnect,
    DiedNodeDown,
    DiedReason,
    Match,
    MonitorRef,
    NodeUnreachable,
    ProcessExitException,
    ProcessId,
    ProcessLinkException,
    ProcessMonitorNotification,
    get_self_pid,
    kill,
    link,
    match_any,
    match_if,
    monitor,
    receive_timeout,
    receive_wait,
    reconnect,
    send,
    spawn,
    spawn_local,
)
from .. import exit as exit_process
from .spec import (
    MAX_INTENSITY_REASON,
    RETRY_AFTER,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    ChildState,
    ChildTable,
    Kind,
    Restart,
    Strategy,
    SupervisorCall,
    SupervisorError,
    SupervisorStarted,
    await_started,
    count_children,
    delete_child,
    is_normal_end,
    parent_supervisor,
    restart_child,
    run_child,
    same,
    start_child,
    terminate_child,
    validate,
    which_children,
)

__all__ = [
    "MAX_INTENSITY_REASON",
    "RETRY_AFTER",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "SupervisorError",
    "count_children",
    "delete_child",
    "restart_child",
    "start_child",
    "start_supervisor",
    "supervisor",
    "supervisor_child",
    "terminate_child",
    "which_children",
]

_link = link  # start_supervisor's `link` argument hides it


class _Stop(Exception):
    """The supervisor must stop its children and end (how: see `_Supervisor.finish`)."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Supervisor(ChildTable):
    def __init__(self, strategy: Strategy, intensity: int, period: float) -> None:
        self.strategy = strategy
        self.intensity = intensity
        self.period = period
        self.children: list[ChildState] = []
        self.by_ref: dict[MonitorRef, ChildState] = {}
        self.restarts: deque[float] = deque()
        self.me = get_self_pid()
        self.loop = asyncio.get_running_loop()
        self.parent_ref: MonitorRef | None = None
        self.signal: BaseException | None = None  # the first exit/link signal taken

    # --- waiting, with exit signals trapped -------------------------------------

    async def receive(self, seconds: float | None, *clauses: Match[Any], main: bool = False) -> Any:
        """A receive that records an exit or link signal (like OTP's trap_exit) and
        keeps waiting (the main loop's returns None); None on timeout."""
        deadline = None if seconds is None else self.loop.time() + seconds
        while True:
            try:
                if deadline is None:
                    return await receive_wait(*clauses)
                return await receive_timeout(max(0.0, deadline - self.loop.time()), *clauses)
            except (ProcessExitException, ProcessLinkException) as e:
                self.signal = self.signal or e
                if main:
                    return None

    async def down(self, ref: MonitorRef, seconds: float | None) -> DiedReason | None:
        note = await self.receive(
            seconds, match_if(ProcessMonitorNotification, lambda n: n.ref == ref, lambda n: n)
        )
        return None if note is None else note.reason

    # --- starting and stopping one child ----------------------------------------

    async def start(self, child: ChildState, first: int = 0) -> str | None:
        """Start *child* (a remote one on the first node, from *first* on, that can be
        reached); None, or why it could not be started."""
        spec = child.spec
        child.retry_at = None
        if isinstance(spec.start, Closure):
            pid = await self.spawn_remote(child, spec.start, first)
            if isinstance(pid, str):
                return pid
        else:
            pid = spawn_local(run_child, self.me, spec.start, *spec.args)
        child.pid, ref = pid, monitor(pid)
        child.ref = ref
        self.by_ref[ref] = child
        if spec.start is not supervisor:
            return None
        # a supervisor child has started when its own children have (as in OTP)
        got = await self.receive(
            None,
            match_if(SupervisorStarted, lambda s: s.pid == pid, same),
            match_if(ProcessMonitorNotification, lambda n: n.ref == ref, same),
        )
        if isinstance(got, SupervisorStarted) and got.error is None:
            return None
        if isinstance(got, SupervisorStarted):
            await self.down(ref, None)
        del self.by_ref[ref]
        child.pid = child.ref = None
        return got.error if isinstance(got, SupervisorStarted) else repr(got.reason)

    async def spawn_remote(self, child: ChildState, clo: Closure, first: int) -> ProcessId | str:
        """Spawn *clo* on the first of the child's nodes, from *first* on, that can be
        reached: its pid, or why none could."""
        nodes, why = child.spec.nodes, []
        for i in range(len(nodes)):
            index = (first + i) % len(nodes)
            reconnect(nodes[index])
            try:
                pid = await spawn(nodes[index], clo)
            except (ProcessExitException, ProcessLinkException) as e:
                self.signal = self.signal or e
                return f"interrupted by {e}"
            except NodeUnreachable as e:
                why.append(str(e))
                continue
            except CloudyError as e:
                why.append(f"{type(e).__name__}: {e}")
                continue
            child.node_index = index
            return pid
        return "; ".join(why)

    async def terminate(self, child: ChildState) -> None:
        """Stop *child* as OTP does: exit "shutdown", then kill after its shutdown time."""
        child.retry_at = None
        pid, ref = child.pid, child.ref
        if pid is None or ref is None:
            return
        timeout = child.spec.shutdown
        if timeout == "brutal_kill":
            kill(pid, "shutdown")
            await self.down(ref, None)
        else:
            exit_process(pid, "shutdown")
            if await self.down(ref, None if math.isinf(timeout) else timeout) is None:
                kill(pid, "shutdown")
                await self.down(ref, None)
        del self.by_ref[ref]
        child.pid = child.ref = None

    async def terminate_all(self) -> None:
        for child in reversed(self.children):
            await self.terminate(child)

    # --- what happens when a child ends -----------------------------------------

    def add_restart(self) -> None:
        now = self.loop.time()
        self.restarts.append(now)
        while self.restarts and now - self.restarts[0] >= self.period:
            self.restarts.popleft()
        if len(self.restarts) > self.intensity:
            raise _Stop(SupervisorError(MAX_INTENSITY_REASON))

    async def child_ended(self, child: ChildState, reason: DiedReason) -> None:
        assert child.ref is not None
        del self.by_ref[child.ref]
        child.pid = child.ref = None
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and is_normal_end(reason)):
            if restart == "temporary":
                self.children.remove(child)
            return
        self.add_restart()
        index = self.children.index(child)
        if self.strategy == "one_for_one":
            group = [child]
        elif self.strategy == "one_for_all":
            group = list(self.children)
        else:
            group = self.children[index:]
        group = [c for c in group if c is child or c.pid is not None or c.retry_at is not None]
        for other in reversed(list(group)):
            if other is not child:
                await self.terminate(other)
                if other.spec.restart == "temporary":
                    self.children.remove(other)
                    group.remove(other)
        lost = isinstance(reason, DiedDisconnect | DiedNodeDown)
        for c in group:
            first = c.node_index + 1 if c is child and lost else 0
            if await self.start(c, first) is not None:
                c.retry_at = self.loop.time() + RETRY_AFTER

    async def retry_due(self) -> None:
        for child in list(self.children):
            if child.retry_at is None or child.retry_at > self.loop.time():
                continue
            if not child.spec.remote:  # a failed start, tried again: counts (OTP's try_again)
                self.add_restart()
            if await self.start(child) is not None:
                child.retry_at = self.loop.time() + RETRY_AFTER

    # --- the whole life -----------------------------------------------------------

    async def init(self, specs: Sequence[ChildSpec]) -> None:
        for spec in specs:
            child = ChildState(spec)
            why = await self.start(child)
            if why is None:
                self.children.append(child)
                continue
            await self.terminate_all()
            raise SupervisorError(f"shutdown: failed to start child {spec.id!r}: {why}")

    async def serve(self) -> None:
        while self.signal is None:
            due = [c.retry_at for c in self.children if c.retry_at is not None]
            timeout = None if not due else max(0.0, min(due) - self.loop.time())
            msg = await self.receive(timeout, match_any(lambda m: m), main=True)
            if isinstance(msg, ProcessMonitorNotification):
                if msg.ref == self.parent_ref:
                    why = f"shutdown: parent {msg.pid} ended ({msg.reason!r})"
                    raise _Stop(SupervisorError(why) if msg.reason.abnormal else None)
                child = self.by_ref.get(msg.ref)
                if child is not None:
                    await self.child_ended(child, msg.reason)
            elif isinstance(msg, SupervisorCall):
                await self.answer(msg)
            await self.retry_due()
        raise _Stop(self.signal)

    async def finish(self, stop: _Stop) -> None:
        """Stop every child (reverse start order); then end as *stop* says."""
        await self.terminate_all()
        cause = stop.cause
        if cause is None:
            return
        if isinstance(cause, ProcessExitException) and cause.reason in ("shutdown", "normal"):
            return
        raise cause


async def _run(
    specs: Sequence[ChildSpec],
    strategy: Strategy,
    intensity: int,
    period: float,
    parent: ProcessId | None,
    report_to: ProcessId | None,
) -> None:
    sup = _Supervisor(strategy, intensity, period)
    if parent is not None:
        sup.parent_ref = monitor(parent)
    try:
        validate(specs, strategy, intensity, period)
        await sup.init(specs)
    except SupervisorError as e:
        if report_to is not None:
            send(report_to, SupervisorStarted(sup.me, str(e)))
        raise
    if report_to is not None:
        send(report_to, SupervisorStarted(sup.me))
    try:
        await sup.serve()
    except _Stop as stop:
        await sup.finish(stop)


async def supervisor(
    children: Sequence[ChildSpec],
    strategy: Strategy = "one_for_one",
    intensity: int = 1,
    period: float = 5.0,
) -> None:
    """The supervisor process's body: ``spawn_local(supervisor, children, ...)``, or the
    start function of a child spec (see `supervisor_child`) to build a tree."""
    await _run(children, strategy, intensity, period, None, parent_supervisor())


def supervisor_child(
    id: str,
    children: Sequence[ChildSpec],
    strategy: Strategy = "one_for_one",
    intensity: int = 1,
    period: float = 5.0,
    *,
    restart: Restart = "permanent",
    shutdown: float = math.inf,
) -> ChildSpec:
    """A `ChildSpec` for a supervisor of *children* (OTP's default shutdown: infinity)."""
    kind: Kind = "supervisor"
    args = (list(children), strategy, intensity, period)
    return ChildSpec(id, supervisor, args, restart=restart, shutdown=shutdown, kind=kind)


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
    pid = spawn_local(_run, list(children), strategy, intensity, period, me if link else None, me)
    await await_started(pid)
    if link:
        _link(pid)
    return pid
