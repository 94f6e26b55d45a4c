"""`LocalNode`: one node's configuration, start and close, and its processes.

Theory of operation
-------------------
A node composes its parts and hands each the collaborators it needs when it is
built, so that no part reaches back into the node:

* `ProcessTable` (``table.py``) — the live processes, the node's id and its
  creation (which run of its address this is: `creation`, in every pid and ref);
* `Registry` (``registry.py``) — names;
* `Router` (``routing.py``) — sends (the prefix rule), which the node offers as its
  own methods (`send`, `send_many`, `nsend`, `exit`, ...);
* `Outbox` (``outbox.py``) — connections to peers and what is on its way to them;
* `Monitors` (``monitors.py``) — who watches whom, here and on other nodes;
* `Requests` (``requests.py``) — remote spawns and calls awaiting a reply;
* `Controller` (``controller.py``) — what arrives from peers, and the transport's
  news of connections made and lost (it is the transport's `ConnectionOwner`);
* the runner (``runner.py``) runs each process and reports its end to `_ended`;
* `Stats` (``stats.py``) — what the node tells of itself and its processes, read on
  demand (`snapshot`: what a view such as the Prometheus exporter shows);
* its `NodeService`s (``service.py``) — what runs beside it, started and closed
  with it (the node knows them by that protocol only).

The node itself starts processes and owns every background task (dials, the
heartbeat), which `close` cancels and waits for.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..closure import Closure, RemoteTable, default_remote_table
from ..cookie import resolve_cookie
from ..errors import (
    NodeClosedError,
    NodeUnreachable,
    NotInProcessError,
    RemoteCallError,
    SpawnError,
)
from ..identity import NodeId, ProcessId, port_number
from ..messages import (
    AnyDiedReason,
    NodeStats,
    ProcessInfo,
    ProcessMonitorNotification,
    ProcessSummary,
)
from ..transport.admission import DEFAULT_MAX_PENDING_HANDSHAKES
from ..transport.tcp import DEFAULT_SEND_HIGH_WATER, SSLConfig, Transport
from ..wire.codec import to_wire
from ..wire.framing import DEFAULT_MAX_FRAME
from .controller import Controller
from .flow import DEFAULT_PAUSE_AT, DEFAULT_WARN_AT, MailboxFlow
from .logger import logger_loop
from .mailbox import Killed, Process, ProcessState, current_process, enter
from .monitors import Monitors
from .outbox import Outbox
from .receive import expect
from .registry import Registry
from .requests import Requests
from .routing import Router
from .runner import run_process
from .service import NodeService
from .stats import NodeSnapshot, Stats
from .table import ProcessTable, new_creation
from .trace import Tracer
from .waiting import waits_in

__all__ = [
    "CURRENT_NODE",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HEARTBEAT_TIMEOUT",
    "LocalNode",
    "current_node",
]

# Dialling a node that does not answer: long enough for a loaded LAN, short
# enough that `spawn` towards a dead host fails while the user still cares.
DEFAULT_CONNECT_TIMEOUT = 5.0
# Silence after which a peer is declared lost (Erlang: 45-75 s; CH: never).
DEFAULT_HEARTBEAT_TIMEOUT = 5.0

_current_node: contextvars.ContextVar[LocalNode] = contextvars.ContextVar("cloudy_node")
#: The node of the calling process, or None outside a process: ``CURRENT_NODE.get(None)``.
CURRENT_NODE = _current_node


def current_node() -> LocalNode:
    """The node the calling process runs on; raises `NotInProcessError` outside one."""
    node = _current_node.get(None)
    if node is None:
        raise NotInProcessError("this must be called from inside a cloudy process")
    return node


class LocalNode:
    """A cloudy node: runs processes and talks to other nodes over TCP.

    Use it as an async context manager::

        async with LocalNode("127.0.0.1", 0) as node:
            result = await node.run_process(main)

    *port* 0 picks a free port (then see `node_id`). *cookie* defaults to
    ``$CLOUDY_COOKIE`` or ``~/.cloudy/cookie``. Leaving the block kills every
    process still running and closes every connection.

    Limits, each with a default that suits most: at most *max_pending_handshakes*
    accepted connections may be authenticating at once (the oldest is dropped for
    a new one; never more than a quarter of the limit on open files); a process
    sending to a peer with more than *send_high_water* bytes waiting for it is
    suspended at its next await; a mailbox holding *mailbox_warn_at* messages is
    logged, and one holding *mailbox_pause_at* stops the connections feeding it
    from being read until it is half as long (see ``flow.py``); a message over
    *max_frame_size* bytes (64 MiB) travels in parts of 1 MiB (``outbox.py``).

    Peers on this machine are linked by a Unix socket rather than TCP (faster; the
    same handshake and cookie) unless *local_sockets* is False (default: on unless
    ``$CLOUDY_LOCAL_SOCKETS`` is 0) or *ssl* is set.

    *services* (`NodeService`) start once it listens and close before it does:
    ``services=[Metrics(9100)]`` serves Prometheus (`cloudy.observe.metrics`).
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
        send_high_water: int = DEFAULT_SEND_HIGH_WATER,
        max_pending_handshakes: int = DEFAULT_MAX_PENDING_HANDSHAKES,
        mailbox_warn_at: int = DEFAULT_WARN_AT,
        mailbox_pause_at: int = DEFAULT_PAUSE_AT,
        logger: bool = True,
        local_sockets: bool | None = None,
        services: Sequence[NodeService] = (),
    ) -> None:
        self._services, self._started = list(services), list[NodeService]()
        self.host = host
        self.node_id = NodeId(host, port_number(port))
        self.remote_table = remote_table if remote_table is not None else default_remote_table
        self._cookie = resolve_cookie(cookie)
        self._connect_timeout = connect_timeout
        self._transport_options: dict[str, Any] = dict(  # what only `Transport` needs
            ssl=ssl,
            heartbeat_timeout=heartbeat_timeout,
            send_high_water=send_high_water,
            max_pending_handshakes=max_pending_handshakes,
            local_sockets=local_sockets,
        )
        self._want_logger = logger
        self._tasks: dict[asyncio.Task[Any], None] = {}  # (in the order they started)
        self._transport: Transport | None = None
        self._closing = False
        # which run of its address this node is: in every pid and ref it makes
        table = ProcessTable(self.node_id, new_creation())
        #: The live processes by local id (read-only: the node keeps it).
        self.processes = table.procs
        self._table = table
        outbox = Outbox(max_frame_size=max_frame_size, own=self._own, lost=self._node_lost)
        self._outbox = outbox
        self.registry = Registry(table)
        self.creation = table.creation  # (see `cloudy.identity`)
        router = self.router = Router(table, outbox, self.registry, self.node_id)
        # the router's sends are the node's: the process API calls them on its node
        self.send, self.send_many, self.send_chan = router.send, router.send_many, router.send_chan
        self.nsend, self.nsend_remote, self.exit = router.nsend, router.nsend_remote, router.exit
        self.may_send, self.reconnect = router.may_send, router.reconnect
        self.next_number, self.new_port = router.next_number, router.new_port
        self.whereis_remote_async = router.whereis_remote_async
        # this node's tracer (`cloudy.start_tracer`); while it hears sends or deliveries
        # (`tracer.messages`), `send` leaves its fast path
        self.tracer: Tracer = table.tracer
        self.registry.on_remote = self._watch_remote_name
        self.monitors = Monitors(self._table, self._outbox)
        self._stats = Stats(self._table, self.registry, self.monitors)
        self._requests = Requests(self._table, self._outbox)
        self.flow = MailboxFlow(warn_at=mailbox_warn_at, pause_at=mailbox_pause_at)
        #: The mailbox length from which a local send tells `flow` (read-only).
        self.watch_mailboxes_at = min(mailbox_warn_at, mailbox_pause_at)
        self._controller = Controller(
            self._table,
            self.registry,
            self.monitors,
            self._requests,
            self._outbox,
            self.flow,
            send=self.send,
            spawn_closure=self._spawn_closure,
        )

    def __repr__(self) -> str:
        peers = len(self._outbox.peers)
        return f"<LocalNode {self.node_id} processes={len(self._table)} peers={peers}>"

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

    # --- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> LocalNode:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen on the node's address and start the logger process.

        Raises `OSError` when the address cannot be bound (port in use, unknown host).
        """
        transport = self._transport = Transport(
            self._controller,  # (what arrives, and connections made and lost)
            cookie=self._cookie,
            local=self.node_id,
            connect_timeout=self._connect_timeout,
            max_frame_size=self._outbox.max_frame_size,
            **self._transport_options,
        )
        port = await transport.listen(self.host, self.node_id.port)
        self.node_id = self._table.node_id = transport.local = NodeId(self.host, port)
        self.router.node_id = self.node_id
        self._outbox.transport = transport
        self._own(transport.heartbeat(), "cloudy-heartbeat")
        try:
            for service in self._services:
                await service.start(self)
                self._started.append(service)
        except BaseException:
            await self._close_services()
            await transport.close()
            raise
        if self._want_logger:
            self.registry.register("logger", self.fork_process(logger_loop))

    async def close(self) -> None:
        """Kill every process, close every connection, and wait for it all to end."""
        if self._closing:
            return
        self._closing = self._outbox.closing = True
        procs = list(self._table.procs.values())
        tasks = [p.task for p in procs if p.task is not None]
        for p in procs:
            p.signal(Killed("node shutting down"))
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*tasks, *self._tasks, return_exceptions=True)
        self._outbox.flush()
        self._requests.close()
        await self._close_services()
        if self._transport is not None:
            await self._transport.close()

    async def _close_services(self) -> None:
        while self._started:  # (in the reverse order of their start)
            await self._started.pop().close()

    def _own(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run *coro* as a background task of this node, cancelled by `close`."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks[task] = None
        task.add_done_callback(lambda t: self._tasks.pop(t, None))
        return task

    # --- processes --------------------------------------------------------------------

    def fork_process(self, fn: Callable[..., Any], *args: Any) -> ProcessId:
        """Start ``fn(*args)`` as a process and return its pid at once."""
        return self._spawn(fn, args, None).pid

    async def run_process(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` as a process; return its result or raise its exception."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._spawn(fn, args, done)
        return await done

    def _spawn(
        self, fn: Callable[..., Any], args: tuple[Any, ...], done: asyncio.Future[Any] | None
    ) -> Process:
        if self._closing:
            raise NodeClosedError(f"{self.node_id} is closed")
        proc = Process(self._table.new_pid(), done, self)
        self._table.procs[proc.pid.lid] = proc
        ctx = enter(proc)
        ctx.run(_current_node.set, self)
        proc.task = asyncio.get_running_loop().create_task(
            run_process(proc, fn, args, self._ended), context=ctx
        )
        self._table.tracer.emit("spawned", proc.pid, detail=getattr(fn, "__qualname__", ""))
        return proc

    def _ended(self, proc: Process, reason: AnyDiedReason) -> None:
        """Everything that follows the end of *proc*: tell monitors and links, clean up."""
        proc.state = ProcessState.DEAD
        pid = proc.pid
        self._table.tracer.emit("died", pid, detail=repr(reason))
        self._table.procs.pop(pid.lid, None)
        self.registry.process_ended(pid)
        self.monitors.process_ended(pid, reason)
        self.flow.ended(proc)
        proc.mailbox = None
        proc.ports = None
        proc.task = None  # (its task's context holds it: no cycle left for the GC)

    async def spawn(self, node: NodeId, clo: Closure) -> ProcessId:
        """Start *clo* on *node* (see `cloudy.spawn`)."""
        if node == self.node_id:
            return self._spawn_closure(clo, None).pid
        pid = await self._requests.request(node, clo.name, to_wire(clo.args), call=False)
        assert isinstance(pid, ProcessId), repr(pid)
        return pid

    @waits_in("call")
    async def call(self, node: NodeId, clo: Closure) -> Any:
        """Run *clo* on *node* and return its result (see `cloudy.call`)."""
        if node == self.node_id:
            done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._spawn_closure(clo, done)
            try:
                return await done
            except Exception as e:
                raise RemoteCallError(node, f"{type(e).__name__}: {e}") from e
        return await self._requests.request(node, clo.name, to_wire(clo.args), call=True)

    def _spawn_closure(self, clo: Closure, done: asyncio.Future[Any] | None) -> Process:
        fn = self.remote_table.lookup(clo.name)
        if fn is None:
            raise SpawnError(f"{clo.name!r} is not in the remote table of {self.node_id}")
        return self._spawn(fn, tuple(clo.args), done)

    def process_count(self) -> int:
        """How many processes live on this node."""
        return len(self._table)

    def process_info(self, pid: ProcessId) -> ProcessInfo | None:
        """What is known of local process *pid*, or None if it is not alive here."""
        proc = self._table.get(pid)
        return None if proc is None else self._stats.process_info(proc)

    def process_infos(self) -> list[ProcessSummary]:
        """Every live process of this node with what is known of it, oldest first."""
        return self._stats.process_infos()

    def node_stats(self) -> NodeStats:
        """This node's counts and traffic (see `cloudy.NodeStats`)."""
        return self._stats.node_stats(self._transport)

    def snapshot(self) -> NodeSnapshot:
        """Its stats and its mailboxes' lengths, now (on the node's loop)."""
        return self._stats.snapshot(self._transport)

    def _watch_remote_name(self, name: str, pid: ProcessId) -> None:
        """Free *name* when remote process *pid* ends or its node is lost."""

        async def watch() -> None:
            self.monitors.monitor(current_process(), pid)
            await expect(ProcessMonitorNotification)
            self.registry.free_if(name, pid)

        if not self._closing:
            self.fork_process(watch)

    # --- the registry, for code outside any process -------------------------------------

    def register(self, name: str, pid: ProcessId) -> None:
        """Register *name* for *pid* (see `cloudy.register`)."""
        self.registry.register(name, pid)

    def whereis(self, name: str) -> ProcessId | None:
        """The pid registered as *name* on this node, or None."""
        return self.registry.whereis(name)

    def _node_lost(self, node: NodeId, error: NodeUnreachable) -> None:
        self._table.tracer.emit("node_down", node=node)
        self.monitors.node_lost(node)
        self._requests.node_lost(node, error)
