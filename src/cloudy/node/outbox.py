"""Towards other nodes: one sending connection per peer, items batched per loop turn.

Theory of operation
-------------------
Items for a remote node go to its `Peer`. The first item for a peer in a loop
turn is written at once (a lone request or reply pays no extra turn); whatever
follows in the same turn is gathered and leaves in one frame from `flush`, run
once at the end of the turn. A batch over the peer's frame limit is split into
several frames; a single item over it goes in parts (`Fragment`), each in a frame
of its own, one after the other on the connection, and the peer decodes the whole
when the last part arrives: a message of any size the memory allows arrives. (The
parts are written at once, so a small message sent after a big one waits for it on
the wire.)

One sending connection per peer keeps the messages from one process to another
in order. If both nodes dial each other at once both connections stay up: each
side sends on the one it adopted first. When a connection is lost every other
connection to that node goes too, and the node is reported lost (``lost``): a
message may have gone with it, so whoever watches that node must be told.

Backpressure (Erlang's busy distribution port): a peer is *busy* while its
connection holds more unsent bytes than the high-water mark, or while more than
`MAX_QUEUED` items wait for it (say, while it is being dialled). `enqueue` then
returns a future that is resolved once the peer is no longer busy (below half the
mark): the process that sent waits on it at its next cloudy await, so a producer
can never run ahead of its peer without bound. Nothing is dropped because of load.
When the peer is lost, the future is resolved too (the sender goes on; what it
sent is reported lost to monitors).

Ownership rule: every connection and every unsent item towards a peer lives in
this file; the transport below sees only bytes. The items written are counted here,
once per frame, on the connection (``messages_out``); a lost peer counts once among
the node's ``connection_losses``, however many connections it had.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ..errors import NodeUnreachable
from ..identity import NodeId
from ..transport.tcp import Connection, ConnState, Transport
from ..wire import protocol as P

__all__ = ["MAX_BATCH", "Outbox", "Peer"]

log = logging.getLogger("cloudy.node")

# Items per frame: bounds the time the receiver spends decoding one frame.
MAX_BATCH = 8192
# Items waiting for a peer (not yet written) above which it is busy.
MAX_QUEUED = 4 * MAX_BATCH
# Bytes a frame holding one `Fragment` adds to its part (array, tag, bin header, flag).
FRAGMENT_OVERHEAD = 16
# The size of each part of a message over the frame limit: small enough that neither
# side buffers much more than one part at a time in its framing.
PART_SIZE = 1 << 20

Own = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]
Lost = Callable[[NodeId, NodeUnreachable], None]


class Peer:
    """What we know of one other node: its sending connection and what waits on it."""

    __slots__ = ("conns", "dialling", "drained", "node", "out", "scheduled", "sender")

    def __init__(self, node: NodeId) -> None:
        self.node = node
        self.sender: Connection | None = None
        self.conns: dict[Connection, None] = {}  # (a dict: in the order they came)
        self.dialling: asyncio.Task[None] | None = None
        self.out: list[P.Item] = []
        self.scheduled = False
        # set while the peer is busy; resolved when it is not
        self.drained: asyncio.Future[None] | None = None

    def check_busy(self) -> asyncio.Future[None] | None:
        """Whether the peer is busy now: the future senders wait on, or None."""
        sender = self.sender
        if (sender is not None and sender.busy) or len(self.out) > MAX_QUEUED:
            if self.drained is None:
                self.drained = asyncio.get_running_loop().create_future()
            return self.drained
        if self.drained is not None:
            self.release()
        return None

    def release(self) -> None:
        """Let everyone waiting for this peer go on."""
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def __repr__(self) -> str:
        state = "up" if self.sender else ("dialling" if self.dialling else "down")
        return f"<Peer {self.node} {state} queued={len(self.out)}>"


class Outbox:
    """The peers of one node, and the items on their way to them."""

    def __init__(self, *, max_frame_size: int, own: Own, lost: Lost) -> None:
        self.max_frame_size = max_frame_size
        self.transport: Transport | None = None  # set when the node starts
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closing = False
        self.peers: dict[NodeId, Peer] = {}
        # how many times each node was lost: a sender's messages to it after a loss
        # are held back until it reconnects (see ``routing``)
        self.generations: dict[NodeId, int] = {}
        self._own = own
        self._lost = lost
        self._dirty: list[Peer] = []
        self._flush_scheduled = False

    def __repr__(self) -> str:
        return f"<Outbox {len(self.peers)} peers>"

    def enqueue(self, node: NodeId, item: P.Item) -> asyncio.Future[None] | None:
        """Send *item* to *node*: at once, later in this turn, or once it is dialled.

        Returns None, or — when the peer is busy — the future to wait on before
        sending more (see the module's docstring).
        """
        peer = self.peers.get(node) or self._peer(node)
        sender = peer.sender
        if not (peer.scheduled or peer.out) and sender is not None:
            # the first item of a turn leaves at once; marked dirty below, the peer
            # batches whatever follows in this turn until `flush`
            self._write(sender, [item])
        else:
            peer.out.append(item)
        if not peer.scheduled:
            self._mark_dirty(peer)
        if sender is None and peer.dialling is None and not self.closing:
            self._dial(peer)
        if peer.drained is not None or len(peer.out) > MAX_QUEUED or (sender and sender.busy):
            return peer.check_busy()
        return None

    def ensure_connected(self, node: NodeId) -> None:
        """Dial *node* unless a connection is up or on its way (for node monitors)."""
        peer = self._peer(node)
        if peer.sender is None and peer.dialling is None and not self.closing:
            self._dial(peer)

    def flush(self) -> None:
        """Write what the dirty peers gathered this turn (run at the end of the turn)."""
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
            if peer.drained is not None:
                peer.check_busy()

    def _peer(self, node: NodeId) -> Peer:
        peer = self.peers.get(node)
        if peer is None:
            peer = self.peers[node] = Peer(node)
        return peer

    def _mark_dirty(self, peer: Peer) -> None:
        """Have `flush` look at *peer* at the end of this loop turn."""
        peer.scheduled = True
        self._dirty.append(peer)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)

    def _write(self, conn: Connection, items: list[P.Item]) -> None:
        """Write *items* as one frame, or several if one would exceed the frame limit."""
        body = P.encode_items(items)
        if len(body) <= self.max_frame_size:
            conn.write_body(body)
            conn.messages_out += len(items)
        elif len(items) > 1:
            half = len(items) // 2
            self._write(conn, items[:half])
            self._write(conn, items[half:])
        else:  # one message over the limit: in parts, one frame each, in order
            step = max(min(PART_SIZE, self.max_frame_size - FRAGMENT_OVERHEAD), 1)
            whole = memoryview(body)
            for start in range(0, len(body), step):
                part = P.Fragment(whole[start : start + step], start + step >= len(body))
                conn.write_body(P.encode_items([part]))
            conn.messages_out += 1

    # --- connections ------------------------------------------------------------------

    def _dial(self, peer: Peer) -> None:
        peer.dialling = self._own(self._dial_task(peer), f"dial {peer.node}")

    async def _dial_task(self, peer: Peer) -> None:
        assert self.transport is not None
        try:
            conn = await self.transport.connect(peer.node)
        except NodeUnreachable as e:
            peer.dialling = None
            if peer.sender is None:
                log.info("cannot reach %s: %s", peer.node, e.cause)
                self._peer_lost(peer.node, e)
            return
        peer.dialling = None
        if conn.state is ConnState.UP:
            self._adopt(peer, conn)

    def _adopt(self, peer: Peer, conn: Connection) -> None:
        peer.conns[conn] = None
        if peer.sender is None:
            peer.sender = conn
            if peer.out and not peer.scheduled:
                self._mark_dirty(peer)

    def connection_busy(self, conn: Connection, busy: bool) -> None:
        """The connection's unsent bytes passed the high-water mark, or fell below half."""
        peer = self.peers.get(conn.remote_node)
        if peer is not None and peer.sender is conn:
            peer.check_busy()

    def connection_up(self, conn: Connection) -> None:
        """A connection finished its handshake (the dialler adopts its own in `_dial_task`)."""
        if not conn.initiator:
            self._adopt(self._peer(conn.remote_node), conn)

    def connection_lost(self, conn: Connection, reason: str) -> None:
        """An UP connection closed: the whole peer is lost (see the module's docstring)."""
        node = conn.remote_node
        peer = self.peers.get(node)
        if peer is None or conn not in peer.conns:
            return
        if self.transport is not None and not self.closing:
            self.transport.traffic.connection_losses += 1
        for other in [c for c in peer.conns if c is not conn]:
            other.close(f"sibling connection lost: {reason}")
        self._peer_lost(node, NodeUnreachable(node, reason))

    def _peer_lost(self, node: NodeId, error: NodeUnreachable) -> None:
        self.generations[node] = self.generations.get(node, 0) + 1
        peer = self.peers.pop(node, None)
        if peer is not None:
            if peer.dialling is not None:
                peer.dialling.cancel()
            peer.release()
        if not self.closing:
            self._lost(node, error)
