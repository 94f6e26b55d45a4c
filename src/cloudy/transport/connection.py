"""One connection between nodes: authenticate, frame, flow control, report loss.

Theory of operation
-------------------
A `Connection` (over TCP, or a Unix socket on one machine: ``unix.py``) is an
asyncio `Protocol` wrapped around the sans-IO `Handshake`
and `FrameDecoder`: bytes from the socket go in, frame bodies come out and are
handed, in bulk, to the owner (the node). It knows nothing of processes.

Lifecycle (``Connection.state``)::

    HANDSHAKE --proof checked--> UP --closed / broken / silent--> CLOSED
        `--refused, bad bytes, timeout---------------------------^

Until it is UP, a connection accepts only frames as small as a handshake's
(`HANDSHAKE_MAX_FRAME`). Once UP it reports to the owner when its unsent bytes
pass the high-water mark and when they fall below half of it (``busy``), and the
owner may stop and resume reading it (``reading_paused``: TCP then slows the peer).

Counting (see ``traffic.py``): bytes once per socket read and write, items once per
frame (by the owner, which knows them); when it closes, its counts join the node's
`Traffic`, and each refusal of a frame or a handshake is counted there by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
from typing import Protocol, cast

from .. import clock
from ..errors import ConnectionRefusedByPeer, NodeUnreachable, ProtocolError
from ..identity import NodeId
from ..wire.framing import HANDSHAKE_MAX_FRAME, HEADER, TICK, DamagedFrame, FrameDecoder, frame
from ..wire.handshake import NONCE_BYTES, PROTOCOL_VERSION, Failure, Handshake, HandshakeState
from . import traffic as T
from .admission import Admission, Refusal

__all__ = [
    "DEFAULT_SEND_HIGH_WATER",
    "LOCAL",
    "ConnState",
    "Connection",
    "ConnectionOwner",
    "Host",
    "unreachable",
]

log = logging.getLogger("cloudy.transport")


# Unsent bytes towards one peer above which the connection is busy and senders wait
# (Erlang's dist_buf_busy_limit is 1 MB); they go on below half of it.
DEFAULT_SEND_HIGH_WATER = 1024 * 1024
# The peer host of a connection over a Unix socket: a process on this machine.
LOCAL = "local"


class ConnState(enum.Enum):
    HANDSHAKE = "handshake"
    UP = "up"
    CLOSED = "closed"


class ConnectionOwner(Protocol):
    """What the layer above provides to receive from connections."""

    def frames_received(self, conn: Connection, bodies: list[bytes]) -> None: ...

    def connection_up(self, conn: Connection) -> None: ...

    def connection_lost(self, conn: Connection, reason: str) -> None: ...

    def connection_busy(self, conn: Connection, busy: bool) -> None: ...


class Host(Protocol):
    """What a connection needs of the transport that made it."""

    owner: ConnectionOwner
    cookie: bytes
    local: NodeId
    max_frame_size: int
    send_high_water: int
    admission: Admission
    traffic: T.Traffic

    def track(self, conn: Connection) -> None: ...

    def untrack(self, conn: Connection) -> None: ...

    def peer_up(self, conn: Connection) -> None: ...

    def peer_closed(self, conn: Connection) -> None: ...


# The handshake failures we refuse a peer for, as `Traffic.refused` labels them.
_REFUSED = {
    Failure.BAD_COOKIE: T.BAD_COOKIE,
    Failure.VERSION: T.VERSION,
    Failure.MALFORMED: T.MALFORMED,
}


class Connection(asyncio.Protocol):
    """One authenticated TCP connection to a peer node."""

    def __init__(self, owner: Host, *, initiator: bool, dialled: NodeId | None) -> None:
        self._owner = owner
        self.initiator = initiator
        self.dialled = dialled
        self.peer: NodeId | None = None
        self.peer_address = "?"
        self.peer_host = "?"
        self.peer_port = 0
        self.state = ConnState.HANDSHAKE
        self._decoder = FrameDecoder(HANDSHAKE_MAX_FRAME)  # raised once UP
        nonce = clock.random_bytes(NONCE_BYTES)
        self._hs = Handshake(
            cookie=owner.cookie, node=owner.local, initiator=initiator, nonce=nonce
        )
        self._tr: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._now = loop.time  # the loop's clock (the simulator's keeps its own)
        self.ready: asyncio.Future[None] = loop.create_future()
        self.last_recv = self._now()
        self.last_sent = self.last_recv
        self.close_reason: str | None = None
        # flow control: our unsent bytes passed the high-water mark (the owner is told),
        # and whether we stopped reading (then its silence proves nothing)
        self.busy = False
        self.reading_paused = False
        # traffic: bytes per read and write; items counted by the owner per frame
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.messages_out = 0
        self.late = False  # silent past a heartbeat interval (see `Transport.heartbeat`)

    def __repr__(self) -> str:
        return f"<Connection {self.state.value} peer={self.peer} address={self.peer_address}>"

    @property
    def remote_node(self) -> NodeId:
        """The node this connection leads to: the one we dialled, else the one that called."""
        node = self.dialled or self.peer
        assert node is not None, "remote_node before the handshake"
        return node

    @property
    def traffic(self) -> T.Traffic:
        """The counters of the node this connection belongs to."""
        return self._owner.traffic

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport behaves as asyncio.Transport without subclassing it
        self._tr = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family == socket.AF_UNIX:  # (see ``unix.py``)
            self.peer_host = LOCAL
            dialled = self.dialled
            self.peer_address = (
                f"{dialled.host}:{dialled.port} over a local socket"
                if dialled
                else "a process on this machine"
            )
        elif peername:
            self.peer_host = str(peername[0])
            self.peer_port = int(peername[1])
            self.peer_address = f"{self.peer_host}:{peername[1]}"
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        high = self._owner.send_high_water
        self._tr.set_write_buffer_limits(high=high, low=high // 2)
        self._owner.track(self)
        hello = self._hs.start()
        self.bytes_out += len(hello)
        self._tr.write(hello)

    def data_received(self, data: bytes) -> None:
        self.last_recv = self._now()
        self.bytes_in += len(data)
        try:
            bodies = self._decoder.feed(data)
            if self.state is ConnState.HANDSHAKE:
                bodies = self._handshake(bodies)
                if self._decoder.buffered and self.close_reason is None:
                    # a frame held back over the handshake's limit: fine if now UP
                    bodies += self._decoder.feed(b"")
        except DamagedFrame as e:
            self._damaged(str(e))
            return
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
        self._decoder = FrameDecoder(0)  # what it held will not be read: let it go
        self._owner.traffic.retire(self)
        if was_up:
            self._owner.peer_closed(self)
        if not self.ready.done():
            self.ready.set_exception(self._failure(reason))
            self.ready.exception()  # the dialler may have given up: don't warn about it
        if was_up:
            self._owner.owner.connection_lost(self, reason)

    def pause_writing(self) -> None:
        self.busy = True
        if self.state is ConnState.UP:
            self._owner.owner.connection_busy(self, True)

    def resume_writing(self) -> None:
        self.busy = False
        if self.state is ConnState.UP:
            self._owner.owner.connection_busy(self, False)

    def pause_reading(self) -> None:
        """Stop reading (the kernel's buffers fill, then the peer's: TCP backpressure)."""
        if not self.reading_paused and self._tr is not None and not self._tr.is_closing():
            self.reading_paused = True
            self._tr.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self._tr is not None and not self._tr.is_closing():
            self.reading_paused = False
            self.last_recv = self._now()  # its silence meanwhile was ours
            self._tr.resume_reading()

    # --- handshake ------------------------------------------------------------------

    def _handshake(self, bodies: list[bytes]) -> list[bytes]:
        for i, body in enumerate(bodies):
            out = self._hs.receive(body)
            if out.error is not None:  # logged before the peer can learn of it
                self._log_failure(out.error, out.failure)
                if out.failure in _REFUSED:
                    self._owner.traffic.refuse(_REFUSED[out.failure])
            if out.data and self._tr is not None:
                self.bytes_out += len(out.data)
                self._tr.write(out.data)
            if out.error is not None:
                self.close(out.error, failure=out.failure)
                return []
            if self._hs.state is HandshakeState.DONE:
                self.peer = self._hs.peer
                self.state = ConnState.UP
                self._owner.peer_up(self)
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
        line = f"{who} {self.peer_address} ({self._whom()}): {error or 'no reason given'}"
        if self.initiator:
            log.warning("%s", line)
        else:  # a peer that sent a Hello: its own line, unless it sends too many
            self._owner.admission.auth_failure(self.peer_host, line)

    def _whom(self) -> str:
        """Who is at the other end, for a log line: the node we dialled, else the node the
        caller said it is in its Hello (not proven: it failed the handshake)."""
        if self.dialled is not None:
            return f"we dialled {self.dialled}"
        claimed = self._hs.peer
        return "it called us" if claimed is None else f"it called us as {claimed}, unproven"

    def _failure(self, reason: str) -> NodeUnreachable:
        node = self.dialled or self.peer or NodeId(self.peer_address, 0)
        return unreachable(node, reason, self._handshake_failure)

    _handshake_failure: Failure | None = None

    def _damaged(self, reason: str) -> None:
        if self.state is ConnState.HANDSHAKE:  # most likely not damage but another framing
            reason = (
                f"not cloudy's protocol {PROTOCOL_VERSION} framing (an older cloudy?): {reason}"
            )
            self._owner.traffic.refuse(T.MALFORMED)
            self._log_failure(reason, Failure.MALFORMED)
        else:
            self._owner.traffic.refuse(T.DAMAGED)
            log.warning(
                "closing the connection with %s (%s): %s", self.peer_address, self.peer, reason
            )
        self.abort(reason)  # as if it broke: what came after it is not read

    def _protocol_error(self, reason: str) -> None:
        self._owner.traffic.refuse(T.TOO_LARGE)  # the decoder's one complaint
        if self.state is ConnState.HANDSHAKE and not self.initiator:
            self._owner.admission.refuse(self.peer_host, Refusal.OVERSIZED)
            self.abort(reason)  # drop what it sent: it will not be read
            return
        if self.state is ConnState.HANDSHAKE:  # we dialled, and what answered is not cloudy:
            # the dialler is told why (its one line says it), as the accepting side
            # counts such callers instead of logging each
            self.abort(f"not cloudy's protocol {PROTOCOL_VERSION} at that address: {reason}")
            return
        log.warning("protocol error from %s (%s): %s", self.peer_address, self.peer, reason)
        self.close(reason)

    # --- sending and closing --------------------------------------------------------

    def write_body(self, body: bytes) -> None:
        """Send one frame body (dropped silently once the connection is closed)."""
        tr = self._tr
        if tr is not None and self.state is ConnState.UP:
            tr.write(frame(body))
            self.bytes_out += len(body) + HEADER
            self.last_sent = self._now()

    def tick(self) -> None:
        if self._tr is not None and self.state is ConnState.UP:
            self._tr.write(TICK)
            self.bytes_out += len(TICK)
            self.last_sent = self._now()

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
