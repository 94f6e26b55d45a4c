"""TCP between nodes: listen, dial, authenticate, frame, heartbeat, report loss.

Theory of operation
-------------------
A `Connection` is an asyncio `Protocol` wrapped around the sans-IO `Handshake`
and `FrameDecoder`: bytes from the socket go in, frame bodies come out and are
handed, in bulk, to whoever `Transport` says owns the connection (the node).
It knows nothing of processes.

Lifecycle (``Connection.state``)::

    HANDSHAKE --proof checked--> UP --closed / broken / silent--> CLOSED
        `--refused, bad bytes, timeout---------------------------^

A heartbeat task writes an empty frame (a *tick*) on every connection that has
sent nothing for a while, and declares lost any connection from which nothing
(not even a tick) has arrived for ``heartbeat_timeout`` seconds: that is how a
frozen or partitioned peer is noticed without waiting for TCP, which may take
many minutes.

Until it is UP, a connection accepts only frames as small as a handshake's
(`HANDSHAKE_MAX_FRAME`), and the listener keeps only so many of them in
handshake, for so long (see `admission`): a peer without the cookie can neither
fill our memory nor our file descriptors, nor our log.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import ssl as _ssl
import time
from typing import Protocol, cast

from ..errors import ConnectionRefusedByPeer, NodeUnreachable, ProtocolError
from ..identity import NodeId
from ..wire.framing import DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME, TICK, FrameDecoder, frame
from ..wire.handshake import Failure, Handshake, HandshakeState
from .admission import DEFAULT_MAX_PENDING_HANDSHAKES, Admission, Refusal, listen_backlog

__all__ = ["ConnState", "Connection", "ConnectionOwner", "SSLConfig", "Transport", "unreachable"]

log = logging.getLogger("cloudy.transport")

SSLConfig = _ssl.SSLContext | tuple[_ssl.SSLContext, _ssl.SSLContext]


class ConnState(enum.Enum):
    HANDSHAKE = "handshake"
    UP = "up"
    CLOSED = "closed"


class ConnectionOwner(Protocol):
    """What the layer above provides to receive from connections."""

    def frames_received(self, conn: Connection, bodies: list[bytes]) -> None: ...

    def connection_up(self, conn: Connection) -> None: ...

    def connection_lost(self, conn: Connection, reason: str) -> None: ...


class Connection(asyncio.Protocol):
    """One authenticated TCP connection to a peer node."""

    def __init__(self, owner: Transport, *, initiator: bool, dialled: NodeId | None) -> None:
        self._owner = owner
        self.initiator = initiator
        self.dialled = dialled
        self.peer: NodeId | None = None
        self.peer_address = "?"
        self.peer_host = "?"
        self.state = ConnState.HANDSHAKE
        self._decoder = FrameDecoder(HANDSHAKE_MAX_FRAME)  # raised once UP
        self._hs = Handshake(cookie=owner.cookie, node=owner.local, initiator=initiator)
        self._tr: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.last_recv = time.monotonic()
        self.last_sent = self.last_recv
        self.close_reason: str | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.state.value} peer={self.peer} address={self.peer_address}>"

    @property
    def remote_node(self) -> NodeId:
        """The node this connection leads to: the one we dialled, else the one that called."""
        node = self.dialled or self.peer
        assert node is not None, "remote_node before the handshake"
        return node

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport behaves as asyncio.Transport without subclassing it
        self._tr = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        if peername:
            self.peer_host = str(peername[0])
            self.peer_address = f"{self.peer_host}:{peername[1]}"
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._owner.track(self)
        self._tr.write(self._hs.start())

    def data_received(self, data: bytes) -> None:
        self.last_recv = time.monotonic()
        try:
            bodies = self._decoder.feed(data)
            if self.state is ConnState.HANDSHAKE:
                bodies = self._handshake(bodies)
                if self._decoder.buffered and self.close_reason is None:
                    # a frame held back over the handshake's limit: fine if now UP
                    bodies += self._decoder.feed(b"")
        except ProtocolError as e:
            self._protocol_error(str(e))
            return
        if bodies and self.state is ConnState.UP:
            self._owner.owner.frames_received(self, bodies)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self.close_reason or (f"connection broken: {exc}" if exc else "closed by peer")
        was_up = self.state is ConnState.UP
        self.state = ConnState.CLOSED
        self._owner.untrack(self)
        if not self.ready.done():
            self.ready.set_exception(self._failure(reason))
            self.ready.exception()  # the dialler may have given up: don't warn about it
        if was_up:
            self._owner.owner.connection_lost(self, reason)

    # --- handshake ------------------------------------------------------------------

    def _handshake(self, bodies: list[bytes]) -> list[bytes]:
        for i, body in enumerate(bodies):
            out = self._hs.receive(body)
            if out.error is not None:  # logged before the peer can learn of it
                self._log_failure(out.error, out.failure)
            if out.data and self._tr is not None:
                self._tr.write(out.data)
            if out.error is not None:
                self.close(out.error, failure=out.failure)
                return []
            if self._hs.state is HandshakeState.DONE:
                self.peer = self._hs.peer
                self.state = ConnState.UP
                self._decoder.max_frame = self._owner.max_frame_size
                self._owner.admission.settle(self)
                if not self.ready.done():
                    self.ready.set_result(None)
                self._owner.owner.connection_up(self)
                return bodies[i + 1 :]
        return []

    def _log_failure(self, error: str, failure: Failure | None) -> None:
        if not self.initiator and failure is Failure.MALFORMED:
            self._owner.admission.refuse(self.peer_host, Refusal.MALFORMED)
            return
        who = "refused by" if failure is Failure.REFUSED_BY_PEER else "refusing"
        line = f"{who} {self.peer_address} ({self.dialled or ''}): {error}"
        if self.initiator:
            log.warning("%s", line)
        else:  # a peer that sent a Hello: its own line, unless it sends too many
            self._owner.admission.auth_failure(self.peer_host, line)

    def _failure(self, reason: str) -> NodeUnreachable:
        node = self.dialled or self.peer or NodeId(self.peer_address, 0)
        return unreachable(node, reason, self._handshake_failure)

    _handshake_failure: Failure | None = None

    def _protocol_error(self, reason: str) -> None:
        if self.state is ConnState.HANDSHAKE and not self.initiator:
            self._owner.admission.refuse(self.peer_host, Refusal.OVERSIZED)
            self.abort(reason)  # drop what it sent: it will not be read
            return
        log.warning("protocol error from %s (%s): %s", self.peer_address, self.peer, reason)
        self.close(reason)

    # --- sending and closing --------------------------------------------------------

    def write_body(self, body: bytes) -> None:
        """Send one frame body (dropped silently once the connection is closed)."""
        tr = self._tr
        if tr is not None and self.state is ConnState.UP:
            tr.write(frame(body))
            self.last_sent = time.monotonic()

    def tick(self) -> None:
        if self._tr is not None and self.state is ConnState.UP:
            self._tr.write(TICK)
            self.last_sent = time.monotonic()

    def close(self, reason: str, *, failure: Failure | None = None) -> None:
        """Close, recording *reason* (and a failed handshake's kind) for whoever is told."""
        if self.close_reason is None:
            self.close_reason = reason
        if self._handshake_failure is None:
            self._handshake_failure = failure
        if self._tr is not None and not self._tr.is_closing():
            self._tr.close()

    def abort(self, reason: str) -> None:
        """Drop the connection at once, without flushing what is buffered."""
        if self.close_reason is None:
            self.close_reason = reason
        if self._tr is not None:
            self._tr.abort()


def unreachable(node: NodeId, cause: str, failure: Failure | None = None) -> NodeUnreachable:
    """The one place where a failure to reach *node* becomes an exception type.

    A peer that answered but would not have us, or that we would not have (another
    cookie, another protocol version), raises `ConnectionRefusedByPeer`: retrying
    will not help. Anything else — refused, timed out, broken, not speaking cloudy —
    raises `NodeUnreachable`.
    """
    if failure in (Failure.BAD_COOKIE, Failure.VERSION, Failure.REFUSED_BY_PEER):
        return ConnectionRefusedByPeer(node, cause)
    return NodeUnreachable(node, cause)


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
    ) -> None:
        self.owner = owner
        self.cookie = cookie
        self.local = local
        self.connect_timeout = connect_timeout
        self.heartbeat_timeout = heartbeat_timeout
        self.max_frame_size = max_frame_size
        # accepted connections in handshake: how many, how long, and the log of refusals
        self.admission = Admission(max_pending_handshakes, timeout=connect_timeout)
        self._ssl_server: _ssl.SSLContext | None = None
        self._ssl_client: _ssl.SSLContext | None = None
        if isinstance(ssl, tuple):
            self._ssl_server, self._ssl_client = ssl
        else:
            self._ssl_server = self._ssl_client = ssl
        self._server: asyncio.Server | None = None
        self._conns: set[Connection] = set()

    def __repr__(self) -> str:
        return f"<Transport {self.local} connections={len(self._conns)}>"

    def track(self, conn: Connection) -> None:
        self._conns.add(conn)
        if not conn.initiator:  # (a dialled one is bounded by `connect`'s timeout)
            self.admission.admit(conn)

    def untrack(self, conn: Connection) -> None:
        self._conns.discard(conn)
        self.admission.settle(conn)

    async def listen(self, host: str, port: int) -> int:
        """Start accepting; return the port actually bound (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self, initiator=False, dialled=None),
            host,
            port,
            ssl=self._ssl_server,
            reuse_address=True,
            backlog=listen_backlog(),
        )
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def connect(self, node: NodeId) -> Connection:
        """Dial *node* and authenticate; return the connection once it is UP.

        Raises `NodeUnreachable` (or `ConnectionRefusedByPeer`) within the
        connect timeout.
        """
        loop = asyncio.get_running_loop()
        conn: Connection | None = None

        def factory() -> Connection:
            nonlocal conn
            conn = Connection(self, initiator=True, dialled=node)
            return conn

        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(
                    factory,
                    node.host,
                    node.port,
                    ssl=self._ssl_client,
                    server_hostname=node.host if self._ssl_client else None,
                )
                assert conn is not None
                await conn.ready
        except TimeoutError:
            if conn is not None:
                conn.abort("connect timeout")
            raise unreachable(node, f"no answer within {self.connect_timeout}s") from None
        except NodeUnreachable:
            raise
        except (OSError, _ssl.SSLError) as e:
            if conn is not None:
                conn.abort(str(e))
            raise unreachable(node, e.strerror or str(e)) from None
        return conn

    async def heartbeat(self) -> None:
        """Tick idle connections and drop silent ones, until cancelled.

        The caller owns this task (the node runs it with its other background tasks).
        """
        # Tick five times per timeout so that one or two late ticks (a busy loop, a
        # GC pause) never look like a dead peer.
        period = self.heartbeat_timeout / 5
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self._conns):
                if conn.state is not ConnState.UP:
                    continue
                if now - conn.last_recv > self.heartbeat_timeout:
                    log.warning(
                        "%s (%s) silent for %.1fs: declaring it lost",
                        conn.remote_node,
                        conn.peer_address,
                        now - conn.last_recv,
                    )
                    conn.abort(f"no heartbeat for {self.heartbeat_timeout}s")
                elif now - conn.last_sent > period:
                    conn.tick()

    async def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        self.admission.close()
        for conn in list(self._conns):
            conn.close("node shutting down")
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
