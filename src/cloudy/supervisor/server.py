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
(one-way links, remote children, exit reasons) is told in docs/runtime.md, "Supervisors".
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
from .child import parent_supervisor, run_child
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
from .spec import (
    MAX_INTENSITY_REASON,
    NORMAL_EXITS,
    RETRY_AFTER,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    ChildState,
    Kind,
    Restart,
    Strategy,
    SupervisorError,
    is_normal_end,
    validate,
)

__all__ = ["run_supervisor", "supervisor", "supervisor_child"]


class _Stop(Exception):
    """The supervisor must stop its children and end (how: see `_Supervisor.finish`)."""

    def __init__(self, cause: BaseException | None) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Supervisor:
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
            seconds, match_if(ProcessMonitorNotification, lambda n: n.ref == ref)
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
            match_if(SupervisorStarted, lambda s: s.pid == pid),
            match_if(ProcessMonitorNotification, lambda n: n.ref == ref),
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

    # --- the run-time API's requests ---------------------------------------------

    async def answer(self, request: Request) -> None:
        try:
            value, error = await self.handle(request), None
        except SupervisorError as e:
            value, error = None, str(e)
        send(request.reply_to, Reply(request.ref, value, error))

    async def handle(self, request: Request) -> Any:
        children = self.children
        if isinstance(request, WhichChildren):
            return [ChildInfo(c.spec.id, c.pid, c.spec.restart, c.spec.kind) for c in children]
        if isinstance(request, CountChildren):
            sups = sum(c.spec.kind == "supervisor" for c in children)
            active = sum(c.pid is not None for c in children)
            return ChildCounts(len(children), active, sups, len(children) - sups)
        if isinstance(request, StartChild):
            spec = request.spec
            if any(c.spec.id == spec.id for c in children):
                raise SupervisorError(f"a child {spec.id!r} already exists in {self.me}")
            child = ChildState(spec)
            if (why := await self.start(child)) is not None:
                raise SupervisorError(f"child {spec.id!r} could not be started: {why}")
            children.append(child)
            return child.pid
        assert isinstance(request, TerminateChild | RestartChild | DeleteChild)
        child = self.find(request.id)
        if isinstance(request, TerminateChild):
            await self.terminate(child)
            if child.spec.restart == "temporary":
                children.remove(child)
            return None
        if child.pid is not None or child.retry_at is not None:
            raise SupervisorError(f"child {child.spec.id!r} is running: terminate it first")
        if isinstance(request, RestartChild):
            if (why := await self.start(child)) is not None:
                raise SupervisorError(f"child {child.spec.id!r} could not be started: {why}")
            return child.pid
        children.remove(child)  # DeleteChild
        return None

    def find(self, child_id: str) -> ChildState:
        for child in self.children:
            if child.spec.id == child_id:
                return child
        raise SupervisorError(f"no child {child_id!r} in supervisor {self.me}")

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
            msg = await self.receive(timeout, match_any(), main=True)
            if isinstance(msg, ProcessMonitorNotification):
                if msg.ref == self.parent_ref:
                    why = f"shutdown: parent {msg.pid} ended ({msg.reason!r})"
                    raise _Stop(SupervisorError(why) if msg.reason.abnormal else None)
                child = self.by_ref.get(msg.ref)
                if child is not None:
                    await self.child_ended(child, msg.reason)
            elif isinstance(msg, Request):
                await self.answer(msg)
            await self.retry_due()
        raise _Stop(self.signal)

    async def finish(self, stop: _Stop) -> None:
        """Stop every child (reverse start order); then end as *stop* says."""
        await self.terminate_all()
        cause = stop.cause
        if cause is None:
            return
        if isinstance(cause, ProcessExitException) and cause.reason in NORMAL_EXITS:
            return
        raise cause


async def run_supervisor(
    specs: Sequence[ChildSpec],
    strategy: Strategy,
    intensity: int,
    period: float,
    parent: ProcessId | None,
    report_to: ProcessId | None,
) -> None:
    """The supervisor process: *parent* (if given) watched, *report_to* told when its
    children have started (`SupervisorStarted`)."""
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
    await run_supervisor(children, strategy, intensity, period, None, parent_supervisor())


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
