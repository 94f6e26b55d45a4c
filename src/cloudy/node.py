"""The node: process table, mailboxes, routing, registry, monitors, links, controller.

Theory of operation
-------------------
A process is an asyncio task running a user coroutine, plus a `_Process` record
holding its mailbox (a deque, made on first delivery so idle processes stay
small) and at most one *waiter* future, set only while the process is blocked in
a receive. Delivering a message is a deque append, and a wake-up only if the
owner is actually waiting: a process that finds a matching message already in its
mailbox pays no task switch (every `REDUCTIONS` receives it yields once anyway, as
Erlang's reduction count does, so it cannot starve the loop).

Asynchronous signals (`exit`, `kill`, a linked process dying) are queued on the
target and its task is cancelled; the cancellation surfaces at the target's next
await. Inside cloudy's own waits it is turned back into the signal's exception
(`ProcessExitException`, `ProcessLinkException`), which user code may catch; at
any other await it ends the process with that reason.

Remote pids are routed to a `_Peer`: one sending connection per peer node, so
messages from one process to another arrive in order. Items for a peer gathered
during one loop iteration leave in one frame. When a connection is lost, every
monitor, link, node monitor and pending request towards that node is told at
once (`DiedDisconnect`), and the next send dials again.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import inspect
import itertools
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from .closure import Closure, RemoteTable, default_remote_table
from .cookie import resolve_cookie
from .errors import (
    EncodeError,
    NodeUnreachable,
    NotInProcessError,
    ProcessExitException,
    ProcessLinkException,
    ProcessRegistrationException,
    RemoteCallError,
    SpawnError,
)
from .identity import MonitorRef, NodeId, ProcessId, SendPort, port_number
from .messages import (
    AnyDiedReason,
    DiedDisconnect,
    DiedException,
    DiedNodeDown,
    DiedNormal,
    DiedUnknownId,
    LogMessage,
    NodeMonitorNotification,
    ProcessMonitorNotification,
    WhereIsReply,
)
from .transport.tcp import Connection, ConnState, SSLConfig, Transport
from .wire import protocol as P
from .wire.codec import Undecodable, find_undecodable, to_wire
from .wire.codec import counter as codec_counter
from .wire.framing import DEFAULT_MAX_FRAME

__all__ = ["LocalNode", "ProcessState", "current_process"]

log = logging.getLogger("cloudy.node")

# Receives served from the mailbox without waiting before a process yields once.
REDUCTIONS = 2000
# Items per frame: bounds the time the receiver spends decoding one frame.
MAX_BATCH = 8192
# Dialling a node that does not answer: long enough for a loaded LAN, short
# enough that `spawn` towards a dead host fails while the user still cares.
DEFAULT_CONNECT_TIMEOUT = 5.0
# Silence after which a peer is declared lost (Erlang: 45-75 s; CH: never).
DEFAULT_HEARTBEAT_TIMEOUT = 5.0

_current: contextvars.ContextVar[_Process] = contextvars.ContextVar("cloudy_process")


class ProcessState(enum.Enum):
    RUNNING = "running"
    DEAD = "dead"


class _Killed(BaseException):
    """Ends a process unconditionally (`kill`): not an `Exception`, so not caught by accident."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _ReceivePortState:
    __slots__ = ("queue", "waiter")

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        self.waiter: asyncio.Future[None] | None = None


class _Process:
    """The node's record of one process."""

    __slots__ = (
        "__weakref__",
        "done",
        "links_to",
        "mailbox",
        "monitors",
        "names",
        "node",
        "pending",
        "pid",
        "ports",
        "reductions",
        "started",
        "state",
        "task",
        "waiter",
        "watching",
    )

    def __init__(self, node: LocalNode, pid: ProcessId) -> None:
        self.node = node
        self.pid = pid
        self.state = ProcessState.RUNNING
        self.task: asyncio.Task[None] | None = None
        self.mailbox: deque[Any] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.pending: list[BaseException] | None = None
        self.reductions = 0
        self.started = False
        # ref -> (watcher, is_link): who is told when this process ends
        self.monitors: dict[MonitorRef, tuple[ProcessId, bool]] | None = None
        # monitors and links this process holds on others: ref -> target
        self.watching: dict[MonitorRef, ProcessId] | None = None
        self.links_to: dict[ProcessId, MonitorRef] | None = None
        self.names: set[str] | None = None
        self.ports: dict[int, _ReceivePortState] | None = None
        self.done: asyncio.Future[Any] | None = None

    def __repr__(self) -> str:
        queued = len(self.mailbox) if self.mailbox else 0
        return f"<Process {self.pid} {self.state.value} mailbox={queued}>"

    def deliver(self, msg: Any) -> None:
        mb = self.mailbox
        if mb is None:
            mb = self.mailbox = deque()
        mb.append(msg)
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():  # cancelled by a signal that has not surfaced yet
                w.set_result(None)

    def signal(self, exc: BaseException) -> None:
        """Queue an asynchronous exception and interrupt the process's current await."""
        if self.state is ProcessState.DEAD or self.task is None:
            return
        if self.pending is None:
            self.pending = []
        # One cancel stands for the whole queue (`take_signal` re-arms it): a cancel
        # per signal would leave the task's cancelling() count above zero for good.
        # A kill cancels regardless, in case the process swallowed an earlier cancel.
        first = not self.pending
        if isinstance(exc, _Killed):
            self.pending.insert(0, exc)
        else:
            self.pending.append(exc)
        if self.started and (first or isinstance(exc, _Killed)):
            self.task.cancel()
        # else: cancelling a task that has not run would skip `_run_process`
        # entirely (and so its cleanup); it takes the signal when it starts.

    def take_signal(self) -> BaseException | None:
        """After a CancelledError: the queued signal it stood for, if any."""
        pending = self.pending
        if not pending:
            return None
        exc = pending.pop(0)
        task = self.task
        assert task is not None
        task.uncancel()
        if pending and not isinstance(exc, _Killed):
            task.cancel()  # the next one surfaces at the next await
        return exc

    async def wait(self, timeout_at: float | None = None) -> bool:
        """Block until a message arrives (True) or *timeout_at* passes (False)."""
        loop = self.node._loop or asyncio.get_running_loop()
        fut = loop.create_future()
        self.waiter = fut
        handle = None
        if timeout_at is not None:
            handle = loop.call_at(timeout_at, _wake, fut)
        try:
            await fut
        except asyncio.CancelledError:
            exc = self.take_signal()
            if exc is None:
                raise
            raise exc from None
        finally:
            self.waiter = None
            if handle is not None:
                handle.cancel()
        return timeout_at is None or loop.time() < timeout_at

    async def checkpoint(self) -> None:
        """Yield to the loop once; deliver any queued signal as its exception."""
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            exc = self.take_signal()
            if exc is None:
                raise
            raise exc from None


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def current_process() -> _Process:
    """The calling process's record; raises `NotInProcessError` outside a process."""
    proc = _current.get(None)
    if proc is None:
        raise NotInProcessError("this must be called from inside a cloudy process")
    return proc


class _Peer:
    """What we know of one other node: its sending connection and what waits on it."""

    __slots__ = ("conns", "dialling", "node", "out", "scheduled", "sender")

    def __init__(self, node: NodeId) -> None:
        self.node = node
        self.sender: Connection | None = None
        self.conns: set[Connection] = set()
        self.dialling: asyncio.Task[None] | None = None
        self.out: list[P.Item] = []
        self.scheduled = False

    def __repr__(self) -> str:
        state = "up" if self.sender else ("dialling" if self.dialling else "down")
        return f"<Peer {self.node} {state} queued={len(self.out)}>"


class LocalNode:
    """A cloudy node: runs processes and talks to other nodes over TCP.

    Use it as an async context manager::

        async with LocalNode("127.0.0.1", 0) as node:
            result = await node.run_process(main)

    *port* 0 picks a free port (then see `node_id`). *cookie* defaults to
    ``$CLOUDY_COOKIE`` or ``~/.cloudy/cookie``. Leaving the block kills every
    process still running and closes every connection.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | str = 0,
        remote_table: RemoteTable | None = None,
        *,
        cookie: str | bytes | None = None,
        ssl: SSLConfig | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        logger: bool = True,
    ) -> None:
        self.host = host
        self.node_id = NodeId(host, port_number(port))
        self.remote_table = remote_table if remote_table is not None else default_remote_table
        self._cookie = resolve_cookie(cookie)
        self._ssl = ssl
        self._connect_timeout = connect_timeout
        self._heartbeat_timeout = heartbeat_timeout
        self._max_frame_size = max_frame_size
        self._want_logger = logger
        self._procs: dict[int, _Process] = {}
        self._names: dict[str, ProcessId] = {}
        self._lids = itertools.count(1)
        self._refs = itertools.count(1)
        self._peers: dict[NodeId, _Peer] = {}
        self._dirty: list[_Peer] = []
        self._flush_scheduled = False
        # monitors/links held by local processes on remote ones, per remote node
        self._remote_refs: dict[NodeId, dict[MonitorRef, tuple[ProcessId, ProcessId, bool]]] = {}
        # monitors/links held by remote processes on local ones: node -> {(lid, ref)}
        self._remote_watchers: dict[NodeId, set[tuple[int, MonitorRef]]] = {}
        self._node_monitors: dict[NodeId, dict[MonitorRef, ProcessId]] = {}
        self._requests: dict[int, tuple[NodeId, asyncio.Future[Any]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._transport: Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False

    def __repr__(self) -> str:
        return f"<LocalNode {self.node_id} processes={len(self._procs)} peers={len(self._peers)}>"

    @property
    def cookie(self) -> bytes:
        """The secret this node proves to its peers (and expects them to prove)."""
        return self._cookie

    @property
    def connect_timeout(self) -> float:
        """Seconds a dial may take before the peer is judged unreachable."""
        return self._connect_timeout

    @property
    def closed(self) -> bool:
        """True once `close` has begun: the node starts no process and dials no peer."""
        return self._closing

    # ================================================================================
    # Lifecycle
    # ================================================================================

    async def __aenter__(self) -> LocalNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen on the node's address and start the logger process.

        Raises `OSError` when the address cannot be bound (port in use, unknown host).
        """
        self._loop = asyncio.get_running_loop()
        self._transport = Transport(
            self,
            cookie=self._cookie,
            local=self.node_id,
            ssl=self._ssl,
            connect_timeout=self._connect_timeout,
            heartbeat_timeout=self._heartbeat_timeout,
            max_frame_size=self._max_frame_size,
        )
        port = await self._transport.listen(self.host, self.node_id.port)
        self.node_id = NodeId(self.host, port)
        self._transport.local = self.node_id
        if self._want_logger:
            self.register("logger", self.fork_process(_logger_loop))

    async def close(self) -> None:
        """Kill every process, close every connection, and wait for it all to end."""
        if self._closing:
            return
        self._closing = True
        tasks = [p.task for p in self._procs.values() if p.task is not None]
        for p in list(self._procs.values()):
            p.signal(_Killed("node shutting down"))
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*tasks, *self._tasks, return_exceptions=True)
        self._flush()
        for node, fut in self._requests.values():
            if not fut.done():
                fut.set_exception(NodeUnreachable(node, "the local node closed"))
        self._requests.clear()
        if self._transport is not None:
            await self._transport.close()

    def _own(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ================================================================================
    # Processes
    # ================================================================================

    def fork_process(self, fn: Callable[..., Any], *args: Any) -> ProcessId:
        """Start ``fn(*args)`` as a process and return its pid at once."""
        return self._spawn(fn, args, None).pid

    async def run_process(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` as a process; return its result or raise its exception."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._spawn(fn, args, done)
        return await done

    def _spawn(
        self, fn: Callable[..., Any], args: tuple[Any, ...], done: asyncio.Future[Any] | None
    ) -> _Process:
        if self._closing:
            raise RuntimeError(f"{self.node_id} is closed")
        pid = ProcessId(self.node_id, next(self._lids))
        proc = _Process(self, pid)
        proc.done = done
        self._procs[pid.lid] = proc
        ctx = contextvars.copy_context()
        ctx.run(_current.set, proc)
        proc.task = asyncio.get_running_loop().create_task(
            _run_process(proc, fn, args), context=ctx
        )
        return proc

    def _ended(self, proc: _Process, reason: AnyDiedReason) -> None:
        """Everything that follows the end of *proc*: tell monitors and links, clean up."""
        proc.state = ProcessState.DEAD
        pid = proc.pid
        self._procs.pop(pid.lid, None)
        if proc.names:
            for name in proc.names:
                if self._names.get(name) == pid:
                    del self._names[name]
        if proc.monitors:
            for ref, (watcher, is_link) in proc.monitors.items():
                self._notify(ref, watcher, pid, reason, is_link)
        if proc.watching:
            for ref, target in proc.watching.items():
                self._drop_watch(ref, target)
        proc.mailbox = None
        proc.ports = None

    def _notify(
        self,
        ref: MonitorRef,
        watcher: ProcessId,
        target: ProcessId,
        reason: AnyDiedReason,
        link: bool,
    ) -> None:
        if watcher.node == self.node_id:
            self._deliver_death(ref, watcher, target, reason, link)
        else:
            watchers = self._remote_watchers.get(watcher.node)
            if watchers is not None:
                watchers.discard((target.lid, ref))
            self._enqueue(watcher.node, P.Died(ref, watcher, target, reason, link))

    def _deliver_death(
        self,
        ref: MonitorRef,
        watcher: ProcessId,
        target: ProcessId,
        reason: AnyDiedReason,
        link: bool,
    ) -> None:
        proc = self._procs.get(watcher.lid)
        if proc is None:
            return
        if proc.watching is not None:
            proc.watching.pop(ref, None)
        if link:
            if proc.links_to is not None and proc.links_to.get(target) == ref:
                del proc.links_to[target]
                if reason.abnormal:
                    proc.signal(ProcessLinkException(target, reason))
        else:
            proc.deliver(ProcessMonitorNotification(ref, target, reason))

    def _drop_watch(self, ref: MonitorRef, target: ProcessId) -> None:
        if target.node == self.node_id:
            tp = self._procs.get(target.lid)
            if tp is not None and tp.monitors is not None:
                tp.monitors.pop(ref, None)
        else:
            refs = self._remote_refs.get(target.node)
            if refs is not None and refs.pop(ref, None) is not None:
                self._enqueue(target.node, P.Unmonitor(ref, target))

    # ================================================================================
    # Messaging
    # ================================================================================

    def send(self, pid: ProcessId, msg: Any) -> None:
        """Deliver *msg* to *pid*; silently dropped if no such process exists."""
        if pid.node == self.node_id:
            proc = self._procs.get(pid.lid)
            if proc is not None:
                proc.deliver(msg)
        else:
            self._enqueue(pid.node, P.Send(pid.lid, to_wire(msg)))

    def nsend(self, name: str, msg: Any) -> None:
        """Send to the process registered locally as *name* (dropped if none)."""
        pid = self._names.get(name)
        if pid is not None:
            self.send(pid, msg)

    def nsend_remote(self, node: NodeId, name: str, msg: Any) -> None:
        """Send to the process registered as *name* on *node*."""
        if node == self.node_id:
            self.nsend(name, msg)
        else:
            self._enqueue(node, P.NSend(name, to_wire(msg)))

    def new_port(self, proc: _Process) -> tuple[SendPort, _ReceivePortState]:
        if proc.ports is None:
            proc.ports = {}
        cid = next(self._refs)
        state = _ReceivePortState()
        proc.ports[cid] = state
        return SendPort(proc.pid, cid), state

    def send_chan(self, port: SendPort, msg: Any) -> None:
        """Deliver *msg* on a typed channel; dropped if its owner has ended."""
        pid = port.pid
        if pid.node == self.node_id:
            self._deliver_chan(pid.lid, port.cid, msg)
        else:
            self._enqueue(pid.node, P.ChanSend(pid.lid, port.cid, to_wire(msg)))

    def _deliver_chan(self, lid: int, cid: int, msg: Any) -> None:
        proc = self._procs.get(lid)
        if proc is None or proc.ports is None:
            return
        state = proc.ports.get(cid)
        if state is None:
            return
        state.queue.append(msg)
        w = state.waiter
        if w is not None:
            state.waiter = None
            if not w.done():
                w.set_result(None)

    # ================================================================================
    # Registry
    # ================================================================================

    def register(self, name: str, pid: ProcessId) -> None:
        """Register *name* for *pid*; raises `ProcessRegistrationException` if taken."""
        if name in self._names:
            raise ProcessRegistrationException(f"{name!r} is already registered")
        self._bind_name(name, pid)

    def reregister(self, name: str, pid: ProcessId) -> None:
        """Point an already registered *name* at *pid*."""
        if name not in self._names:
            raise ProcessRegistrationException(f"{name!r} is not registered")
        self._unbind_name(name)
        self._bind_name(name, pid)

    def unregister(self, name: str) -> None:
        """Remove *name*; raises `ProcessRegistrationException` if it is not registered."""
        if name not in self._names:
            raise ProcessRegistrationException(f"{name!r} is not registered")
        self._unbind_name(name)

    def whereis(self, name: str) -> ProcessId | None:
        """The pid registered as *name* on this node, or None."""
        return self._names.get(name)

    def whereis_remote_async(self, reply_to: ProcessId, node: NodeId, name: str) -> None:
        """Have *node* send a `WhereIsReply` about *name* to *reply_to*."""
        if node == self.node_id:
            self.send(reply_to, WhereIsReply(name, self._names.get(name)))
        else:
            self._enqueue(node, P.WhereIs(name, reply_to))

    def _bind_name(self, name: str, pid: ProcessId) -> None:
        if pid.node == self.node_id:
            proc = self._procs.get(pid.lid)
            if proc is None:
                raise ProcessRegistrationException(f"cannot register {name!r}: {pid} is not alive")
            if proc.names is None:
                proc.names = set()
            proc.names.add(name)
        self._names[name] = pid

    def _unbind_name(self, name: str) -> None:
        pid = self._names.pop(name)
        proc = self._procs.get(pid.lid) if pid.node == self.node_id else None
        if proc is not None and proc.names is not None:
            proc.names.discard(name)

    # ================================================================================
    # Monitoring and linking
    # ================================================================================

    def new_ref(self) -> MonitorRef:
        return MonitorRef(self.node_id, next(self._refs))

    def monitor(self, watcher: _Process, target: ProcessId, link: bool = False) -> MonitorRef:
        """Watch *target* for *watcher*; see `cloudy.monitor` and `cloudy.link`."""
        ref = self.new_ref()
        if watcher.watching is None:
            watcher.watching = {}
        watcher.watching[ref] = target
        if link:
            if watcher.links_to is None:
                watcher.links_to = {}
            watcher.links_to[target] = ref
        if target.node == self.node_id:
            tp = self._procs.get(target.lid)
            if tp is None:
                self._deliver_death(ref, watcher.pid, target, DiedUnknownId(), link)
            else:
                if tp.monitors is None:
                    tp.monitors = {}
                tp.monitors[ref] = (watcher.pid, link)
        else:
            self._remote_refs.setdefault(target.node, {})[ref] = (watcher.pid, target, link)
            self._enqueue(target.node, P.Monitor(ref, watcher.pid, target, link))
        return ref

    def unmonitor(self, watcher: _Process, ref: MonitorRef) -> None:
        """Stop the monitor *ref*; a notification already delivered stays in the mailbox."""
        if watcher.watching is None:
            return
        target = watcher.watching.pop(ref, None)
        if target is not None:
            self._drop_watch(ref, target)

    def unlink(self, watcher: _Process, target: ProcessId) -> None:
        if watcher.links_to is None:
            return
        ref = watcher.links_to.pop(target, None)
        if ref is not None:
            self.unmonitor(watcher, ref)

    def monitor_node(self, watcher: _Process, node: NodeId) -> MonitorRef:
        """Tell *watcher* with a `NodeMonitorNotification` when the link to *node* is lost."""
        ref = self.new_ref()
        if node == self.node_id:
            return ref
        self._node_monitors.setdefault(node, {})[ref] = watcher.pid
        peer = self._peer(node)
        if peer.sender is None:
            self._dial(peer)
        return ref

    def unmonitor_node(self, ref: MonitorRef) -> None:
        for refs in self._node_monitors.values():
            refs.pop(ref, None)

    def exit(self, sender: ProcessId, target: ProcessId, reason: Any, kill: bool) -> None:
        """Raise an exit signal in *target* (end it, when *kill*)."""
        if target.node == self.node_id:
            proc = self._procs.get(target.lid)
            if proc is not None:
                if kill:
                    proc.signal(_Killed(f"killed by {sender}: {reason}"))
                else:
                    proc.signal(ProcessExitException(sender, reason))
        else:
            self._enqueue(target.node, P.Exit(target, sender, to_wire(reason), kill))

    # ================================================================================
    # Remote spawn and requests
    # ================================================================================

    async def request(self, node: NodeId, make: Callable[[int], P.Item]) -> Any:
        """Send the item ``make(req)`` to *node* and wait for its `Reply`."""
        req = next(self._refs)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._requests[req] = (node, fut)
        try:
            self._enqueue(node, make(req))
            return await fut
        finally:
            self._requests.pop(req, None)

    async def spawn(self, node: NodeId, clo: Closure) -> ProcessId:
        if node == self.node_id:
            return self._spawn_closure(clo, None).pid
        pid = await self.request(
            node, lambda req: P.SpawnRequest(req, clo.name, to_wire(clo.args), False)
        )
        assert isinstance(pid, ProcessId), repr(pid)
        return pid

    async def call(self, node: NodeId, clo: Closure) -> Any:
        if node == self.node_id:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[Any] = loop.create_future()
            self._spawn_closure(clo, done)
            try:
                return await done
            except Exception as e:
                raise RemoteCallError(node, f"{type(e).__name__}: {e}") from e
        return await self.request(
            node, lambda req: P.SpawnRequest(req, clo.name, to_wire(clo.args), True)
        )

    def _spawn_closure(self, clo: Closure, done: asyncio.Future[Any] | None) -> _Process:
        fn = self.remote_table.lookup(clo.name)
        if fn is None:
            raise SpawnError(f"{clo.name!r} is not in the remote table of {self.node_id}")
        return self._spawn(fn, tuple(clo.args), done)

    # ================================================================================
    # Peers: connections, batching, loss
    # ================================================================================

    def _peer(self, node: NodeId) -> _Peer:
        peer = self._peers.get(node)
        if peer is None:
            peer = self._peers[node] = _Peer(node)
        return peer

    def _enqueue(self, node: NodeId, item: P.Item) -> None:
        peer = self._peers.get(node) or self._peer(node)
        if not (peer.scheduled or peer.out) and peer.sender is not None:
            # the first item of a turn leaves at once: a lone request or reply pays no
            # extra turn of the event loop; marked dirty below, the peer batches whatever
            # follows in this turn until `_flush`
            self._write(peer.sender, [item])
        else:
            peer.out.append(item)
        if not peer.scheduled:
            self._mark_dirty(peer)
        if peer.sender is None and peer.dialling is None and not self._closing:
            self._dial(peer)

    def _mark_dirty(self, peer: _Peer) -> None:
        """Have `_flush` look at *peer* at the end of this loop turn."""
        peer.scheduled = True
        self._dirty.append(peer)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        for peer in dirty:
            peer.scheduled = False
            conn = peer.sender
            if conn is None or not peer.out:
                continue  # still dialling (the items wait), or nothing left to send
            out, peer.out = peer.out, []
            for i in range(0, len(out), MAX_BATCH):
                self._write(conn, out[i : i + MAX_BATCH])

    def _write(self, conn: Connection, items: list[P.Item]) -> None:
        """Write *items* as one frame, or several if one would exceed the frame limit."""
        body = P.encode_items(items)
        if len(body) <= self._max_frame_size:
            conn.write_body(body)
        elif len(items) > 1:
            half = len(items) // 2
            self._write(conn, items[:half])
            self._write(conn, items[half:])
        else:  # the peer would close the connection on it, losing everything in flight
            log.error(
                "dropped a %s of %d bytes for %s: over the frame limit of %d bytes",
                type(items[0]).__name__,
                len(body),
                conn.remote_node,
                self._max_frame_size,
            )

    def _dial(self, peer: _Peer) -> None:
        peer.dialling = self._own(self._dial_task(peer), f"dial {peer.node}")

    async def _dial_task(self, peer: _Peer) -> None:
        assert self._transport is not None
        try:
            conn = await self._transport.connect(peer.node)
        except NodeUnreachable as e:
            peer.dialling = None
            if peer.sender is None:
                log.info("cannot reach %s: %s", peer.node, e.cause)
                self._peer_lost(peer.node, e)
            return
        peer.dialling = None
        if conn.state is ConnState.UP:
            # If the peer dialled us meanwhile, both connections stay: each side keeps
            # sending on the one it adopted first, so order holds either way.
            peer.conns.add(conn)
            if peer.sender is None:
                peer.sender = conn
                self._schedule(peer)

    def _schedule(self, peer: _Peer) -> None:
        if peer.out and not peer.scheduled:
            self._mark_dirty(peer)

    # ConnectionOwner: called by the transport

    def connection_up(self, conn: Connection) -> None:
        if conn.initiator:
            return  # the dialler adopts it
        peer = self._peer(conn.remote_node)
        peer.conns.add(conn)
        if peer.sender is None:
            peer.sender = conn
            self._schedule(peer)

    def connection_lost(self, conn: Connection, reason: str) -> None:
        node = conn.remote_node
        peer = self._peers.get(node)
        if peer is None or conn not in peer.conns:
            return
        # Messages may have been lost with this connection: every other connection
        # to the node goes too, and everyone watching it is told.
        for other in peer.conns - {conn}:
            other.close(f"sibling connection lost: {reason}")
        self._peer_lost(node, NodeUnreachable(node, reason))

    def _peer_lost(self, node: NodeId, error: NodeUnreachable) -> None:
        peer = self._peers.pop(node, None)
        if peer is not None and peer.dialling is not None:
            peer.dialling.cancel()
        if self._closing:
            return
        reason = DiedDisconnect()
        for ref, (watcher, target, link) in self._remote_refs.pop(node, {}).items():
            self._deliver_death(ref, watcher, target, reason, link)
        for lid, ref in self._remote_watchers.pop(node, set()):
            proc = self._procs.get(lid)
            if proc is not None and proc.monitors is not None:
                proc.monitors.pop(ref, None)
        for ref, watcher in self._node_monitors.pop(node, {}).items():
            self.send(watcher, NodeMonitorNotification(ref, node, reason))
        for req_node, fut in list(self._requests.values()):
            if req_node == node and not fut.done():
                fut.set_exception(error)

    def frames_received(self, conn: Connection, bodies: list[bytes]) -> None:
        procs = self._procs
        for body in bodies:
            seen = codec_counter.undecodable
            try:
                items = P.decode_items(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                log.warning(
                    "closing connection from %s: undecodable frame (%s)", conn.remote_node, e
                )
                conn.close(f"undecodable frame: {e}")
                return
            if codec_counter.undecodable != seen:
                # something in this frame could not be rebuilt: drop just those messages
                items = self._without_undecodable(conn, items)
            for item in items:
                if type(item) is P.Send:
                    proc = procs.get(item.lid)
                    if proc is not None:
                        payload = item.payload
                        if type(payload) is Undecodable:
                            self._drop(conn, payload)
                        else:
                            proc.deliver(payload)
                else:
                    self._control(conn, item)

    def _without_undecodable(self, conn: Connection, items: list[P.Item]) -> list[P.Item]:
        kept = []
        for item in items:
            # messages for processes are dropped; the controller's own requests
            # (spawn arguments, replies) carry their errors back to the caller
            is_message = type(item) in (P.Send, P.NSend, P.ChanSend)
            bad = find_undecodable(item) if is_message else None
            if bad is None:
                kept.append(item)
            else:
                self._drop(conn, bad)
        return kept

    def _drop(self, conn: Connection, what: Undecodable) -> None:
        log.warning("dropped a message from %s: %s", conn.remote_node, what.cause)

    # ================================================================================
    # Node controller: signals from peers
    # ================================================================================

    def _control(self, conn: Connection, item: P.Item) -> None:
        handler = _CONTROL.get(type(item))
        if handler is not None:
            handler(self, conn, item)

    def _on_nsend(self, conn: Connection, item: P.NSend) -> None:
        if type(item.payload) is Undecodable:
            self._drop(conn, item.payload)
        else:
            self.nsend(item.name, item.payload)

    def _on_chan_send(self, conn: Connection, item: P.ChanSend) -> None:
        if type(item.payload) is Undecodable:
            self._drop(conn, item.payload)
        else:
            self._deliver_chan(item.lid, item.cid, item.payload)

    def _on_monitor(self, conn: Connection, item: P.Monitor) -> None:
        proc = self._procs.get(item.target.lid)
        if proc is None:
            self._notify(item.ref, item.watcher, item.target, DiedUnknownId(), item.link)
            return
        if proc.monitors is None:
            proc.monitors = {}
        proc.monitors[item.ref] = (item.watcher, item.link)
        self._remote_watchers.setdefault(item.watcher.node, set()).add((proc.pid.lid, item.ref))

    def _on_unmonitor(self, conn: Connection, item: P.Unmonitor) -> None:
        proc = self._procs.get(item.target.lid)
        if proc is not None and proc.monitors is not None:
            proc.monitors.pop(item.ref, None)

    def _on_unlink(self, conn: Connection, item: P.Unlink) -> None:
        proc = self._procs.get(item.target.lid)
        if proc is not None and proc.monitors is not None:
            for ref, (watcher, link) in list(proc.monitors.items()):
                if link and watcher == item.linker:
                    del proc.monitors[ref]

    def _on_died(self, conn: Connection, item: P.Died) -> None:
        refs = self._remote_refs.get(item.target.node)
        if refs is not None:
            refs.pop(item.ref, None)
        self._deliver_death(item.ref, item.watcher, item.target, item.reason, item.link)

    def _on_exit(self, conn: Connection, item: P.Exit) -> None:
        # by number: the sender may know this node under another name (an alias)
        self.exit(item.sender, ProcessId(self.node_id, item.target.lid), item.reason, item.kill)

    def _on_spawn(self, conn: Connection, item: P.SpawnRequest) -> None:
        origin = conn.remote_node
        args = item.args
        if type(args) is Undecodable or not isinstance(args, tuple | list):
            self._enqueue(origin, P.Reply(item.req, None, f"bad arguments for {item.name}"))
            return
        done: asyncio.Future[Any] | None = None
        if item.call:
            done = asyncio.get_running_loop().create_future()
            done.add_done_callback(lambda f: self._reply_call(origin, item.req, item.name, f))
        try:
            proc = self._spawn_closure(Closure(item.name, tuple(args)), done)
        except (SpawnError, RuntimeError) as e:
            self._enqueue(origin, P.Reply(item.req, None, str(e)))
            return
        if not item.call:
            self._enqueue(origin, P.Reply(item.req, to_wire(proc.pid), None))

    def _reply_call(self, origin: NodeId, req: int, name: str, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            reply = P.Reply(req, None, f"{name} was cancelled on {self.node_id}")
        elif (e := fut.exception()) is not None:
            reply = P.Reply(req, None, f"{type(e).__name__}: {e}")
        else:
            try:
                reply = P.Reply(req, to_wire(fut.result()), None)
            except EncodeError as e:
                reply = P.Reply(req, None, f"the result of {name} cannot be sent: {e}")
        self._enqueue(origin, reply)

    def _on_reply(self, conn: Connection, item: P.Reply) -> None:
        entry = self._requests.get(item.req)
        if entry is None or entry[1].done():
            return
        node, fut = entry
        if item.error is not None:
            fut.set_exception(RemoteCallError(node, item.error))
        elif type(item.value) is Undecodable:
            fut.set_exception(RemoteCallError(node, f"undecodable reply: {item.value.cause}"))
        else:
            fut.set_result(item.value)

    def _on_whereis(self, conn: Connection, item: P.WhereIs) -> None:
        self.send(item.reply_to, WhereIsReply(item.name, self._names.get(item.name)))


_CONTROL: dict[type, Callable[[LocalNode, Connection, Any], None]] = {
    P.NSend: LocalNode._on_nsend,
    P.ChanSend: LocalNode._on_chan_send,
    P.Monitor: LocalNode._on_monitor,
    P.Unmonitor: LocalNode._on_unmonitor,
    P.Unlink: LocalNode._on_unlink,
    P.Died: LocalNode._on_died,
    P.Exit: LocalNode._on_exit,
    P.SpawnRequest: LocalNode._on_spawn,
    P.Reply: LocalNode._on_reply,
    P.WhereIs: LocalNode._on_whereis,
}


# ====================================================================================
# Running a process
# ====================================================================================

log_crash = logging.getLogger("cloudy.process")


async def _run_process(proc: _Process, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    reason: AnyDiedReason = DiedNormal()
    result: Any = None
    error: BaseException | None = None
    proc.started = True
    try:
        if proc.pending:
            raise proc.pending.pop(0)
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
    except asyncio.CancelledError as e:
        exc = proc.take_signal()
        if exc is None:
            proc.node._ended(proc, DiedNodeDown())
            _settle(proc, None, e)
            raise
        error = exc
        reason = _reason_for(exc)
    except _Killed as e:
        error = e
        reason = _reason_for(e)
    except Exception as e:
        error = e
        reason = _reason_for(e)
        if proc.done is None and not isinstance(e, ProcessExitException | ProcessLinkException):
            log_crash.error("process %s crashed", proc.pid, exc_info=e)
    proc.node._ended(proc, reason)
    _settle(proc, result, error)


def _reason_for(exc: BaseException) -> AnyDiedReason:
    if isinstance(exc, _Killed):
        return DiedException(exc.reason)
    return DiedException(f"{type(exc).__name__}: {exc}")


def _settle(proc: _Process, result: Any, error: BaseException | None) -> None:
    done = proc.done
    if done is None or done.done():
        return
    if error is None:
        done.set_result(result)
    elif isinstance(error, _Killed):
        done.set_exception(ProcessExitException(proc.pid, error.reason))
    else:
        done.set_exception(error)


async def _logger_loop() -> None:
    proc = current_process()
    while True:
        mb = proc.mailbox
        while mb:
            msg = mb.popleft()
            if isinstance(msg, LogMessage):
                print(f"{msg.time} {msg.pid}: {msg.text}", file=sys.stderr, flush=True)
        await proc.wait()


def log_time() -> str:
    """The timestamp `say` puts on a line."""
    now = time.time()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


def iter_processes(node: LocalNode) -> Iterable[ProcessId]:
    """The pids of the processes running on *node*."""
    return [p.pid for p in node._procs.values()]
