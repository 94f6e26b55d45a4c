"""SimpleLocalnet: zero-configuration master and slave nodes on a local network.

The Python form of Cloud Haskell's ``Control.Distributed.Process.Backend.SimpleLocalnet``::

    backend = initialize_backend("127.0.0.1", 8080)
    start_slave(backend)                  # a slave: blocks until terminated

    backend = initialize_backend("127.0.0.1", 8084)
    start_master(backend, master)         # finds the slaves, runs master(slaves)

Nodes find each other with signed UDP multicast datagrams (group 224.0.0.99, port
9999 by default) on the interface of the node's own address, or by asking a static
list of peers over TCP where multicast is blocked (``peers=`` or ``CLOUDY_PEERS``).
Where Cloud Haskell differs, this module follows what a user expects:

- `Backend.find_peers` returns only the nodes that answered *this* request and can
  be reached over TCP with our cookie, not every node that ever answered;
- `terminate_all_slaves` returns once every slave has confirmed (or its connection
  dropped), not after a fixed sleep;
- a backend owns one node (a node owns its TCP port): `new_local_node` starts it
  once and returns it on every later call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ..aio import run
from ..closure import RemoteTable
from ..errors import CloudyError
from ..identity import NodeId, ProcessId, port_number
from ..message import Message
from ..messages import NodeMonitorNotification, ProcessMonitorNotification, WhereIsReply
from ..node import DEFAULT_CONNECT_TIMEOUT, LocalNode
from ..process import (
    get_self_node,
    get_self_pid,
    match,
    match_any,
    match_if,
    monitor,
    monitor_node,
    nsend_remote,
    receive_timeout,
    receive_wait,
    register,
    reregister,
    send,
    unmonitor,
    unmonitor_node,
    whereis,
    whereis_remote_async,
)
from ..transport.discovery import DEFAULT_GROUP, DEFAULT_PORT, Discovery, interface_address

__all__ = [
    "DEFAULT_GROUP",
    "DEFAULT_PORT",
    "SLAVE_CONTROLLER",
    "Backend",
    "LogsRedirected",
    "RedirectLogs",
    "SlaveTerminated",
    "TerminateSlave",
    "find_slaves",
    "initialize_backend",
    "parse_peers",
    "redirect_logs_here",
    "run_master",
    "run_slave",
    "start_master",
    "start_slave",
    "terminate_all_slaves",
    "terminate_slave",
    "terminate_slaves",
]

log = logging.getLogger("cloudy.backend")

SLAVE_CONTROLLER = "slaveController"
# How long find_slaves listens for discovery answers, as Cloud Haskell's findSlaves.
DEFAULT_DISCOVERY_TIMEOUT = 1.0
# How long, past the discovery window, a node that answered may take to be reached.
REACH_GRACE = 1.0


# ====================================================================================
# Messages between the master and the slave controllers
# ====================================================================================


class TerminateSlave(Message):
    """Ends a slave controller, and with it the slave's program."""

    reply_to: ProcessId | None = None


class SlaveTerminated(Message):
    """A slave controller's answer to `TerminateSlave`: it is ending now."""

    node: NodeId


class RedirectLogs(Message):
    """Makes a slave's ``"logger"`` name point at *logger* (on the master)."""

    logger: ProcessId
    reply_to: ProcessId


class LogsRedirected(Message):
    """A slave controller's answer to `RedirectLogs`."""

    node: NodeId


# ====================================================================================
# The backend
# ====================================================================================


def parse_peers(peers: Iterable[NodeId | str] | str | None) -> list[NodeId]:
    """Static peers from a list or a comma-separated string of ``host:port`` or node ids.

    Raises `ValueError` naming the entry that is neither.
    """
    if peers is None:
        return []
    items = peers.split(",") if isinstance(peers, str) else list(peers)
    out: list[NodeId] = []
    for item in items:
        if isinstance(item, NodeId):
            out.append(item)
        elif item.strip():
            out.append(NodeId.parse(item.strip()))
    return out


class Backend:
    """One node's SimpleLocalnet set-up: its address, its table, how it finds others.

    Made by `initialize_backend`; use ``async with backend:`` (or `close`) to end
    its node and discovery daemon.
    """

    def __init__(
        self,
        host: str,
        port: int | str,
        remote_table: RemoteTable | None = None,
        *,
        cookie: str | bytes | None = None,
        multicast_group: str = DEFAULT_GROUP,
        multicast_port: int = DEFAULT_PORT,
        peers: Iterable[NodeId | str] | str | None = None,
        discovery: bool = True,
        **node_options: Any,
    ) -> None:
        self.host = host
        self.port = port_number(port)
        self.remote_table = remote_table
        self.peers = parse_peers(os.environ.get("CLOUDY_PEERS") if peers is None else peers)
        self.multicast_group = multicast_group
        self.multicast_port = multicast_port
        self._cookie = cookie
        self._node_options = node_options
        self._connect_timeout: float = node_options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        self._node: LocalNode | None = None
        self._starting: asyncio.Lock | None = None
        self._discovery: Discovery | None = None
        self._want_discovery = discovery
        self.discovery_error: str | None = None
        # What the discovery daemon would use, checked now so that errors come early.
        self.interface: str | None = None
        if discovery:
            try:
                self.interface = interface_address(host)
            except OSError as e:
                if not self.peers:
                    raise
                # an IPv6-only host, say: the static peers will do
                log.warning("no multicast discovery: %s; asking the peers only", e)
                self._want_discovery = False

    def __repr__(self) -> str:
        return f"<Backend {self.host}:{self.port} discovery={self.describe_discovery()}>"

    def describe_discovery(self) -> str:
        """Where this backend looks for peers, for messages to the user."""
        parts = []
        if self._want_discovery:
            parts.append(
                f"multicast {self.multicast_group}:{self.multicast_port} via {self.interface}"
            )
        if self.peers:
            parts.append("peers " + ",".join(f"{p.host}:{p.port}" for p in self.peers))
        return " and ".join(parts) or "nothing (no multicast, no peers)"

    @property
    def node(self) -> LocalNode:
        """The backend's node, once `new_local_node` has started it."""
        if self._node is None:
            raise CloudyError("the backend has no node yet: await backend.new_local_node()")
        return self._node

    async def new_local_node(self) -> LocalNode:
        """Start the backend's node and its discovery daemon (once); return the node.

        Raises `OSError` if the node's address cannot be bound (for instance, the
        port is in use).
        """
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._node is not None:
                return self._node
            node = LocalNode(
                self.host, self.port, self.remote_table, cookie=self._cookie, **self._node_options
            )
            await node.start()
            self._node = node
            if self._want_discovery and self.interface is not None:
                daemon = Discovery(
                    cookie=node.cookie,
                    interface=self.interface,
                    answer=self._answer,
                    group=self.multicast_group,
                    port=self.multicast_port,
                )
                try:
                    await daemon.start()
                except OSError as e:
                    self.discovery_error = str(e)
                    log.warning("%s; only static peers will be found (--peers)", e)
                else:
                    self._discovery = daemon
            return node

    def _answer(self) -> NodeId | None:
        node = self._node
        return None if node is None or node.closed else node.node_id

    @property
    def dropped_datagrams(self) -> dict[str, int]:
        """Datagrams the discovery daemon ignored so far, by kind (garbage, cookie, ...)."""
        return dict(self._discovery.dropped) if self._discovery is not None else {}

    async def find_peers(
        self,
        timeout: float = DEFAULT_DISCOVERY_TIMEOUT,  # noqa: ASYNC109 - as Cloud Haskell's
    ) -> list[NodeId]:
        """The nodes, this one included, that answer a discovery request within *timeout* s.

        Nodes answer a multicast request; static peers are asked directly over TCP.
        Only nodes that answered this request and that this node can reach with its
        cookie are returned (sorted), so nodes that have died are left out.
        """
        node = await self.new_local_node()
        deadline = time.monotonic() + timeout + REACH_GRACE
        checks: dict[NodeId, asyncio.Task[WhereIsReply | None]] = {}

        def found(peer: NodeId) -> None:
            if peer not in checks:
                checks[peer] = asyncio.ensure_future(
                    _whereis_on(node, peer, SLAVE_CONTROLLER, deadline)
                )

        found(node.node_id)  # this node answers too, multicast or not
        for peer in self.peers:
            found(peer)
        try:
            if self._discovery is not None:
                await self._discovery.ask(timeout, found)
            elif self.peers:
                await asyncio.sleep(0)
            if checks:
                await asyncio.wait(checks.values())
        finally:
            for task in checks.values():
                task.cancel()
        alive = [
            peer
            for peer, task in checks.items()
            if not task.cancelled() and task.result() is not None
        ]
        return sorted(alive, key=lambda n: (n.host, n.port))

    async def close(self) -> None:
        """End the discovery daemon and the node."""
        if self._discovery is not None:
            self._discovery.close()
            self._discovery = None
        if self._node is not None:
            await self._node.close()

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def initialize_backend(
    host: str, port: int | str, remote_table: RemoteTable | None = None, **options: Any
) -> Backend:
    """A backend for a node at *host*:*port* (port may be a string; 0 picks one).

    Options: ``cookie``, ``multicast_group`` (224.0.0.99), ``multicast_port`` (9999),
    ``peers`` (static peers, default ``$CLOUDY_PEERS``), ``discovery`` (False: static
    peers only), and any `LocalNode` option (``ssl``, ``connect_timeout``,
    ``heartbeat_timeout``, ``max_frame_size``). Raises `OSError` if *host* does not
    resolve, `ValueError` for a bad port or peer.
    """
    return Backend(host, port, remote_table, **options)


async def _whereis_on(
    node: LocalNode, peer: NodeId, name: str, deadline: float
) -> WhereIsReply | None:
    """*peer*'s answer about *name*, or None if it is not reached (with our cookie) by
    *deadline*. One process per peer: an answer "not here" does not name its node."""
    if peer == node.node_id:
        return WhereIsReply(name, node.whereis(name))

    async def ask() -> WhereIsReply | None:
        ref = monitor_node(peer)
        whereis_remote_async(peer, name)
        answer = await receive_timeout(
            max(deadline - time.monotonic(), 0.0),
            match(WhereIsReply, _same_reply),
            match_if(NodeMonitorNotification, lambda m: m.ref == ref, _no_reply),
        )
        unmonitor_node(ref)
        return answer

    result: WhereIsReply | None = await node.run_process(ask)
    return result


def _same_reply(reply: WhereIsReply) -> WhereIsReply | None:
    return reply


def _no_reply(_: NodeMonitorNotification) -> WhereIsReply | None:
    return None  # the node is lost: no answer will come


# ====================================================================================
# Slaves
# ====================================================================================


async def _slave_controller() -> None:
    """Registered as ``"slaveController"``: waits for work and for `TerminateSlave`."""
    own_logger = whereis("logger")
    redirected: Any = None  # the monitor on the master's logger, while redirected
    while True:
        msg = await receive_wait(match_any(lambda m: m))
        if isinstance(msg, TerminateSlave):
            if msg.reply_to is not None:
                send(msg.reply_to, SlaveTerminated(get_self_node()))
            return
        if isinstance(msg, RedirectLogs):
            if redirected is not None:
                unmonitor(redirected)
            _point_logger_at(msg.logger)
            redirected = monitor(msg.logger)
            send(msg.reply_to, LogsRedirected(get_self_node()))
        elif isinstance(msg, ProcessMonitorNotification) and msg.ref == redirected:
            # the master's logger is gone: our lines print here again
            redirected = None
            if own_logger is not None:
                _point_logger_at(own_logger)
        else:
            log.debug("slave controller ignored %r", msg)


def _point_logger_at(pid: ProcessId) -> None:
    if whereis("logger") is None:
        register("logger", pid)
    else:
        reregister("logger", pid)


async def run_slave(backend: Backend) -> None:
    """Run a slave node until a master terminates it (the coroutine form of `start_slave`)."""
    node = await backend.new_local_node()
    try:

        async def controller() -> None:
            register(SLAVE_CONTROLLER, get_self_pid())
            await _slave_controller()

        await node.run_process(controller)
    finally:
        await backend.close()


def start_slave(backend: Backend) -> None:
    """Start a slave node and block until a master terminates it, as Cloud Haskell's."""
    run(run_slave(backend))


def terminate_slave(node: NodeId) -> None:
    """Ask the slave on *node* to end (from inside a process; no confirmation awaited)."""
    nsend_remote(node, SLAVE_CONTROLLER, TerminateSlave(None))


async def find_slaves(
    backend: Backend,
    timeout: float = DEFAULT_DISCOVERY_TIMEOUT,  # noqa: ASYNC109 - as Cloud Haskell's
) -> list[ProcessId]:
    """The slave controllers of the nodes that answer discovery within *timeout* s.

    Call it inside a process. Nodes that die meanwhile, and masters, are left out.
    """
    peers = await backend.find_peers(timeout)
    deadline = time.monotonic() + backend._connect_timeout
    answers = await asyncio.gather(
        *(_whereis_on(backend.node, peer, SLAVE_CONTROLLER, deadline) for peer in peers)
    )
    return sorted(
        (a.pid for a in answers if a is not None and a.pid is not None),
        key=lambda p: (p.node.host, p.node.port),
    )


def _same(msg: Message) -> Message:
    return msg


async def _confirmed(
    nodes: list[NodeId],
    ask: Callable[[NodeId], None],
    reply: type[SlaveTerminated | LogsRedirected],
) -> None:
    """Call ``ask(node)`` for each node; return once each replied with *reply* or was lost."""
    refs = {monitor_node(node): node for node in nodes}
    pending = set(nodes)
    for node in nodes:
        ask(node)
    while pending:
        msg = await receive_timeout(
            DEFAULT_CONNECT_TIMEOUT,
            match(reply, _same),
            match_if(NodeMonitorNotification, lambda m: m.ref in refs, _same),
        )
        if msg is None:
            log.warning("no answer from %s", ", ".join(sorted(map(str, pending))))
            break
        if isinstance(msg, NodeMonitorNotification):
            pending.discard(refs[msg.ref])
        elif isinstance(msg, SlaveTerminated | LogsRedirected):
            pending.discard(msg.node)
    for ref in refs:
        unmonitor_node(ref)


async def terminate_slaves(nodes: Iterable[NodeId]) -> None:
    """End the slaves on *nodes*; returns once each confirmed or its connection dropped."""
    me = get_self_pid()

    def ask(node: NodeId) -> None:
        nsend_remote(node, SLAVE_CONTROLLER, TerminateSlave(me))

    await _confirmed(list(nodes), ask, SlaveTerminated)


async def terminate_all_slaves(backend: Backend) -> None:
    """End every slave found; returns once each confirmed or its connection dropped."""
    await terminate_slaves(pid.node for pid in await find_slaves(backend))


async def redirect_logs_here(backend: Backend, slave_controllers: Iterable[ProcessId]) -> None:
    """Make the slaves' ``say`` lines print on this node (returns once each confirmed)."""
    logger = whereis("logger")
    if logger is None:
        raise CloudyError(f"no process is registered as 'logger' on {get_self_node()}")
    me = get_self_pid()
    controllers = {pid.node: pid for pid in slave_controllers}

    def ask(node: NodeId) -> None:
        send(controllers[node], RedirectLogs(logger, me))

    await _confirmed(list(controllers), ask, LogsRedirected)


# ====================================================================================
# Masters
# ====================================================================================


async def run_master(
    backend: Backend,
    proc: Callable[[list[NodeId]], Awaitable[Any]],
    *,
    slaves: int | None = None,
    within: float = 30.0,
    on_wait: Callable[[], None] | None = None,
) -> Any:
    """Find the slaves, redirect their logs here, run ``proc(slave_nodes)`` as a process.

    The coroutine form of `start_master`; returns what *proc* returns. With *slaves*,
    discovery goes on until that many are found (then exactly that many are used),
    for at most *within* seconds, then raises `CloudyError`; *on_wait* is called
    before each round and may raise to give up.
    """
    node = await backend.new_local_node()
    try:

        async def master() -> Any:
            deadline = time.monotonic() + within
            while True:
                if on_wait is not None:
                    on_wait()
                found = await find_slaves(backend)
                if slaves is None or len(found) >= slaves:
                    break
                if time.monotonic() >= deadline:
                    raise CloudyError(
                        f"found {len(found)} of {slaves} slaves within {within:g} s\n"
                        + _nothing_found(backend)
                    )
            if not found:
                print(_nothing_found(backend), file=sys.stderr, flush=True)
            found = found[:slaves]
            await redirect_logs_here(backend, found)
            return await proc([pid.node for pid in found])

        return await node.run_process(master)
    finally:
        await backend.close()


def start_master(backend: Backend, proc: Callable[[list[NodeId]], Awaitable[Any]]) -> Any:
    """Find the slaves, redirect their logs here, run ``proc(slave_nodes)``; block until done."""
    return run(run_master(backend, proc))


def _nothing_found(backend: Backend) -> str:
    lines = [f"cloudy: not enough slaves found with {backend.describe_discovery()}. Check:"]
    if backend.discovery_error:
        lines.append(f"  - multicast is unusable here ({backend.discovery_error}): use --peers")
    lines += [
        "  - that the slaves run and use the same cookie (CLOUDY_COOKIE or ~/.cloudy/cookie)",
        "  - that a firewall lets UDP multicast through on that interface, or use --peers",
        f"  - that the slaves' hosts are on the same network as {backend.interface}"
        " (a loopback address only reaches this machine)",
        f"  - cloudy doctor {backend.host}",
    ]
    return "\n".join(lines)
