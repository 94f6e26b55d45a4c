"""TCP between nodes: listen, dial, and the heartbeat that notices a silent peer.

(Peers on the same machine are linked by a Unix socket instead: ``unix.py``.)

Theory of operation
-------------------
`Transport` listens for and dials `Connection`s (see ``connection.py``) for one
node, and hands what they receive to its owner. A heartbeat task writes an empty
frame (a *tick*) on every connection that has sent nothing for a while, and
declares lost any connection from which nothing (not even a tick) has arrived
for ``heartbeat_timeout`` seconds: that is how a frozen or partitioned peer is
noticed without waiting for TCP, which may take many minutes. Silence counts
only while our own loop turns on time and while we read the connection. A peer
silent for two tick periods (`late_after`: it missed a tick) is *late*; each time
one becomes late is counted in `traffic` (``heartbeats_missed``). The last
connection lost to each node is kept (a few, until that node is back) for whoever
looks just after a loss (`closed`).

The listener keeps only so many connections in handshake, for so long (see
`admission`): a peer without the cookie can neither fill our memory nor our file
descriptors, nor our log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable
from typing import Any

from .. import clock
from ..errors import ConnectionRefusedByPeer, NodeUnreachable, listen_error
from ..identity import NodeId
from ..wire.framing import DEFAULT_MAX_FRAME
from . import unix
from .admission import DEFAULT_MAX_PENDING_HANDSHAKES, Admission, listen_backlog
from .connection import (
    DEFAULT_SEND_HIGH_WATER,
    LOCAL,
    Connection,
    ConnectionOwner,
    ConnState,
    unreachable,
)
from .traffic import Traffic

__all__ = [
    "DEFAULT_SEND_HIGH_WATER",
    "LOCAL",
    "ConnState",
    "Connection",
    "ConnectionOwner",
    "SSLConfig",
    "Transport",
    "unreachable",
]

log = logging.getLogger("cloudy.transport")

SSLConfig = _ssl.SSLContext | tuple[_ssl.SSLContext, _ssl.SSLContext]

# Ticks per heartbeat timeout: one or two late ones (a busy loop, a GC pause) never
# look like a dead peer.
TICKS_PER_TIMEOUT = 5
# Tick periods of silence after which a peer is late (it missed one).
LATE_TICKS = 2
# Lost connections kept for a look after the loss (the newest, one per node).
KEPT_CLOSED = 16


class Transport:
    """Listens for and dials authenticated connections for one node."""

    def __init__(
        self,
        owner: ConnectionOwner,
        *,
        cookie: bytes,
        local: NodeId,
        ssl: SSLConfig | None = None,
        connect_timeout: float,
        heartbeat_timeout: float,
        max_frame_size: int = DEFAULT_MAX_FRAME,
        max_pending_handshakes: int = DEFAULT_MAX_PENDING_HANDSHAKES,
        send_high_water: int = DEFAULT_SEND_HIGH_WATER,
        local_sockets: bool | None = None,
    ) -> None:
        self.owner = owner
        # peers on this machine over a Unix socket (see ``unix``), unless TLS is on
        self._local_sockets = unix.wanted(local_sockets)
        self.send_high_water = send_high_water
        self.cookie = cookie
        self.local = local
        self.connect_timeout = connect_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.max_frame_size = max_frame_size
        self.traffic = Traffic()
        # accepted connections in handshake: how many, how long, and the log of refusals
        self.admission = Admission(
            max_pending_handshakes, timeout=connect_timeout, on_refused=self.traffic.refuse
        )
        self._ssl_server: _ssl.SSLContext | None = None
        self._ssl_client: _ssl.SSLContext | None = None
        if isinstance(ssl, tuple):
            self._ssl_server, self._ssl_client = ssl
        else:
            self._ssl_server = self._ssl_client = ssl
        self._server: asyncio.Server | None = None
        self._local_server: asyncio.AbstractServer | None = None
        # (a dict, not a set: iterated in the order they came, not by address)
        self._conns: dict[Connection, None] = {}
        # the last connection lost to each node, until it is back (newest last)
        self.closed: dict[NodeId, Connection] = {}

    def __repr__(self) -> str:
        return f"<Transport {self.local} connections={len(self._conns)}>"

    def track(self, conn: Connection) -> None:
        self._conns[conn] = None
        if not conn.initiator:  # (a dialled one is bounded by `connect`'s timeout)
            self.admission.admit(conn)

    def untrack(self, conn: Connection) -> None:
        self._conns.pop(conn, None)
        self.admission.settle(conn)

    def peer_up(self, conn: Connection) -> None:
        self.closed.pop(conn.remote_node, None)

    def peer_closed(self, conn: Connection) -> None:
        node = conn.remote_node
        self.closed.pop(node, None)
        self.closed[node] = conn
        if len(self.closed) > KEPT_CLOSED:
            del self.closed[next(iter(self.closed))]

    def connections(self) -> list[Connection]:
        """Every open connection, in handshake or up."""
        return list(self._conns)

    @property
    def late_after(self) -> float:
        """Seconds of silence after which a peer is late (it missed a tick)."""
        return self.heartbeat_timeout * LATE_TICKS / TICKS_PER_TIMEOUT

    async def listen(self, host: str, port: int) -> int:
        """Start accepting; return the port actually bound (useful with port 0).

        Raises `OSError` saying in one line why it cannot and what to do (`listen_error`).
        """
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: Connection(self, initiator=False, dialled=None),
                host,
                port,
                ssl=self._ssl_server,
                reuse_address=True,
                backlog=listen_backlog(),
            )
        except OSError as e:
            raise listen_error(host, port, e) from None
        sockets = self._server.sockets
        bound = int(sockets[0].getsockname()[1]) if sockets else port
        if self._local_sockets and self._ssl_server is None:
            sock = unix.bind(host, bound)
            if sock is not None:
                self._local_server = await loop.create_unix_server(
                    lambda: Connection(self, initiator=False, dialled=None),
                    sock=sock,
                    backlog=listen_backlog(),
                )
        return bound

    def _dial_local(self, node: NodeId) -> socket.socket | None:
        """A socket to *node*'s local name, if it runs on this machine (see ``unix``)."""
        if self._local_sockets and self._ssl_client is None:
            return unix.dial(node.host, node.port)
        return None

    async def connect(self, node: NodeId) -> Connection:
        """Dial *node* and authenticate; return the connection once it is UP.

        Raises `NodeUnreachable` (or `ConnectionRefusedByPeer`) within the
        connect timeout. A node on this machine is dialled on its local socket first
        (see ``unix``); if what answers there does not complete a handshake within
        half the timeout, or fails it without refusing us, TCP gets the rest.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.connect_timeout
        sock = self._dial_local(node)
        if sock is not None:
            try:
                half = self.connect_timeout / 2
                return await self._open(
                    node, deadline - half, half, loop.create_unix_connection, sock=sock
                )
            except ConnectionRefusedByPeer:
                raise  # it answered, and would not have us: so would TCP
            except NodeUnreachable as e:
                log.info("%s on its local socket: %s; dialling TCP", node, e)
        return await self._open(
            node,
            deadline,
            self.connect_timeout,
            loop.create_connection,
            host=node.host,
            port=node.port,
            ssl=self._ssl_client,
            server_hostname=node.host if self._ssl_client else None,
        )

    async def _open(
        self,
        node: NodeId,
        deadline: float,
        budget: float,
        opener: Callable[..., Awaitable[Any]],
        **how: Any,
    ) -> Connection:
        """Open a connection to *node* with *opener* (given *how*) and wait, until
        *deadline* (*budget* seconds after the dial began), for its handshake."""
        conn: Connection | None = None

        def factory() -> Connection:
            nonlocal conn
            conn = Connection(self, initiator=True, dialled=node)
            return conn

        try:
            async with asyncio.timeout_at(deadline):
                await opener(factory, **how)
                assert conn is not None
                await conn.ready
        except TimeoutError:
            if conn is not None:
                conn.abort("connect timeout")
            raise unreachable(node, f"no answer within {budget:g}s") from None
        except NodeUnreachable:
            raise
        except (OSError, _ssl.SSLError) as e:
            if conn is not None:
                conn.abort(str(e))
            if isinstance(e, ConnectionRefusedError):  # asyncio's words name no reason
                raise unreachable(node, "connection refused: no node listens there") from None
            raise unreachable(node, e.strerror or str(e)) from None
        return conn

    async def heartbeat(self) -> None:
        """Tick idle connections and drop silent ones, until cancelled.

        The caller owns this task (the node runs it with its other background tasks).
        """
        period = self.heartbeat_timeout / TICKS_PER_TIMEOUT
        late_after = self.late_after
        traffic = self.traffic
        awake = clock.now()  # since when our own loop has been turning on time
        while True:
            before = clock.now()
            await asyncio.sleep(period)
            now = clock.now()
            if now - before > 2 * period:
                # Our own loop stalled (a long turn, a GC pause, SIGSTOP): what peers sent
                # meanwhile may sit unread in the kernel. Judge silence from now on only.
                awake = now
            for conn in list(self._conns):
                if conn.state is not ConnState.UP:
                    continue
                # a connection we stopped reading: its silence is ours, not the peer's
                silent = 0.0 if conn.reading_paused else now - max(conn.last_recv, awake)
                late = silent > late_after
                if late is not conn.late:
                    conn.late = late
                    if late:
                        traffic.heartbeats_missed += 1
                if silent > self.heartbeat_timeout:
                    log.warning(
                        "%s (%s) silent for %.1fs: declaring it lost",
                        conn.remote_node,
                        conn.peer_address,
                        now - conn.last_recv,
                    )
                    conn.abort(f"no heartbeat for {self.heartbeat_timeout}s")
                elif now - conn.last_sent > period / 2:  # a tick at least every period
                    conn.tick()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        if self._local_server is not None:
            self._local_server.close()
        self.admission.close()
        for conn in list(self._conns):
            conn.close("node shutting down")
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
