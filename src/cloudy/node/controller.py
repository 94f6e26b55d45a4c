"""The node controller: what arrives from other nodes, one function per signal.

Frames from the transport are decoded here in bulk. A `Send` (a message for a
process) is delivered in the loop itself — the hot path; every other item is one
of the closed set of signals in `cloudy.wire.protocol`, dispatched through one
table to one function each. A message with a part the codec could not rebuild is
dropped with a log line naming the peer; the rest of its frame is delivered.
Each frame's items are counted on its connection (``messages_in``), once per frame;
what is refused, by reason, among the node's traffic counters. Whatever is addressed
to a pid of another creation than this node's (a pid from before it restarted) is
refused as for a process that does not exist, and said once (`ProcessTable.refuse`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from ..closure import Closure
from ..errors import CloudyError, EncodeError
from ..identity import NodeId, ProcessId
from ..messages import WhereIsReply
from ..transport.tcp import Connection
from ..transport.traffic import UNDECODABLE, UNDECODABLE_MESSAGE
from ..wire import protocol as P
from ..wire.codec import Undecodable, find_undecodable, to_wire
from ..wire.codec import counter as codec_counter
from .flow import MailboxFlow
from .mailbox import Process, exit_signal
from .monitors import Monitors
from .outbox import Outbox
from .registry import Registry
from .requests import Requests
from .table import ProcessTable

__all__ = ["Controller"]

log = logging.getLogger("cloudy.node")

Send = Callable[[ProcessId, Any], object]
SpawnClosure = Callable[[Closure, "asyncio.Future[Any] | None"], Process]


class Controller:
    """Receives the frames of every connection of one node."""

    def __init__(
        self,
        table: ProcessTable,
        registry: Registry,
        monitors: Monitors,
        requests: Requests,
        outbox: Outbox,
        flow: MailboxFlow,
        *,
        send: Send,
        spawn_closure: SpawnClosure,
    ) -> None:
        self._table = table
        self._registry = registry
        self._monitors = monitors
        self._requests = requests
        self._outbox = outbox
        self._flow = flow
        self._send = send
        self._spawn_closure = spawn_closure
        # the parts received so far of a message too large for one frame, per connection
        self._parts: dict[Connection, list[memoryview]] = {}

    # --- the transport's `ConnectionOwner`: connections made and lost ----------------

    def connection_up(self, conn: Connection) -> None:
        self._table.tracer.emit("node_up", node=conn.remote_node)
        self._outbox.connection_up(conn)

    def connection_lost(self, conn: Connection, reason: str) -> None:
        self._parts.pop(conn, None)  # (a message cut short with its connection)
        self._outbox.connection_lost(conn, reason)

    def connection_busy(self, conn: Connection, busy: bool) -> None:
        self._outbox.connection_busy(conn, busy)

    # --- what arrives ------------------------------------------------------------------

    def frames_received(self, conn: Connection, bodies: list[bytes]) -> None:
        table = self._table
        procs = table.procs
        tracer = table.tracer
        creation = table.creation
        for body in bodies:
            seen = codec_counter.undecodable
            try:
                items = P.decode_items(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                self._undecodable(conn, e)
                return
            if items and type(items[0]) is P.Fragment:  # a part of a message too large
                whole = self._reassemble(conn, items[0])  # for one frame
                if whole is None:
                    continue
                items = whole
            conn.messages_in += len(items)
            if codec_counter.undecodable != seen:
                # something in this frame could not be rebuilt: drop just those messages
                items = self._without_undecodable(conn, items)
            last: Process | None = None  # to check each mailbox once per frame
            for item in items:
                if type(item) is P.Send:
                    if item.creation != creation:
                        self._refuse("a message", item.lid, item.creation, conn)
                        continue
                    proc = procs.get(item.lid)
                    if proc is not None:
                        if tracer.receives:
                            kind = type(item.payload).__name__
                            tracer.emit("received", proc.pid, node=conn.remote_node, detail=kind)
                        proc.deliver(item.payload)
                        if proc is not last:
                            if last is not None:
                                self._flow.delivered(last, conn)
                            last = proc
                else:
                    _HANDLERS[type(item)](self, conn, item)
            if last is not None:
                self._flow.delivered(last, conn)

    def _undecodable(self, conn: Connection, e: Exception) -> None:
        log.warning("closing connection from %s: undecodable frame (%s)", conn.remote_node, e)
        conn.traffic.refuse(UNDECODABLE)
        conn.close(f"undecodable frame: {e}")

    def _reassemble(self, conn: Connection, part: P.Fragment) -> list[P.Item] | None:
        """Keep *part*; after the last one, the items of the whole body (else None)."""
        parts = self._parts.setdefault(conn, [])
        parts.append(part.chunk)
        if not part.last:
            return None
        del self._parts[conn]
        body = bytearray().join(parts)
        parts.clear()  # (the parts' frames go before the whole is decoded: half the peak)
        try:
            return P.decode_items(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self._undecodable(conn, e)
            return None

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
                log.warning("dropped a message from %s: %s", conn.remote_node, bad.cause)
                conn.traffic.refuse(UNDECODABLE_MESSAGE)
                self._outbox.enqueue(conn.remote_node, P.Dropped(str(bad.cause)))
        return kept

    def _refuse(self, what: str, lid: int, creation: int, conn: Connection) -> None:
        pid = ProcessId(self._table.node_id, lid, creation)
        self._table.refuse(what, creation, conn.remote_node, pid)

    # --- one function per signal ----------------------------------------------------

    def _on_dropped(self, conn: Connection, item: P.Dropped) -> None:
        log.warning("%s dropped a message from this node: %s", conn.remote_node, item.cause)

    def _on_nsend(self, conn: Connection, item: P.NSend) -> None:
        pid = self._registry.whereis(item.name)
        if pid is not None:
            self._send(pid, item.payload)

    def _on_chan_send(self, conn: Connection, item: P.ChanSend) -> None:
        if item.creation != self._table.creation:
            self._refuse("a channel message", item.lid, item.creation, conn)
            return
        proc = self._table.procs.get(item.lid)
        if proc is not None and proc.ports is not None:
            port = proc.ports.get(item.cid)
            if port is not None:
                port.deliver(item.payload)

    def _on_monitor(self, conn: Connection, item: P.Monitor) -> None:
        self._monitors.on_monitor(item)

    def _on_unmonitor(self, conn: Connection, item: P.Unmonitor) -> None:
        self._monitors.on_unmonitor(item)

    def _on_died(self, conn: Connection, item: P.Died) -> None:
        self._monitors.on_died(item)

    def _on_exit(self, conn: Connection, item: P.Exit) -> None:
        # by number: the sender may know this node under another name (an alias)
        target = item.target
        proc = self._table.local(target)
        if proc is not None:
            proc.signal(exit_signal(item.sender, item.reason, item.kill))
        elif target.creation != self._table.creation:
            self._refuse("an exit signal", target.lid, target.creation, conn)

    def _on_spawn(self, conn: Connection, item: P.SpawnRequest) -> None:
        origin = conn.remote_node
        req, asker = item.req, item.creation
        args = item.args
        if type(args) is Undecodable or not isinstance(args, tuple | list):
            error = f"bad arguments for {item.name}"
            self._outbox.enqueue(origin, P.Reply(req, asker, None, error))
            return
        done: asyncio.Future[Any] | None = None
        if item.call:
            done = asyncio.get_running_loop().create_future()
            done.add_done_callback(lambda f: self._reply_call(origin, item, f))
        try:
            proc = self._spawn_closure(Closure(item.name, tuple(args)), done)
        except CloudyError as e:
            self._outbox.enqueue(origin, P.Reply(req, asker, None, str(e)))
            return
        if not item.call:
            self._outbox.enqueue(origin, P.Reply(req, asker, to_wire(proc.pid), None))

    def _reply_call(self, origin: NodeId, item: P.SpawnRequest, fut: asyncio.Future[Any]) -> None:
        req, asker, name = item.req, item.creation, item.name
        if fut.cancelled():
            reply = P.Reply(req, asker, None, f"{name} was cancelled on {self._table.node_id}")
        elif (e := fut.exception()) is not None:
            reply = P.Reply(req, asker, None, f"{type(e).__name__}: {e}")
        else:
            try:
                reply = P.Reply(req, asker, to_wire(fut.result()), None)
            except EncodeError as e:
                error = f"the result of {name} cannot be sent: {e}"
                reply = P.Reply(req, asker, None, error)
        self._outbox.enqueue(origin, reply)

    def _on_reply(self, conn: Connection, item: P.Reply) -> None:
        if item.creation != self._table.creation:
            # asked by this node's address before it restarted: not by this run
            self._table.refuse("a reply to a spawn or call", item.creation, conn.remote_node)
            return
        self._requests.on_reply(item)

    def _on_whereis(self, conn: Connection, item: P.WhereIs) -> None:
        self._send(item.reply_to, WhereIsReply(item.name, self._registry.whereis(item.name)))


_HANDLERS: dict[type, Callable[[Controller, Connection, Any], None]] = {
    P.NSend: Controller._on_nsend,
    P.ChanSend: Controller._on_chan_send,
    P.Monitor: Controller._on_monitor,
    P.Unmonitor: Controller._on_unmonitor,
    P.Died: Controller._on_died,
    P.Exit: Controller._on_exit,
    P.SpawnRequest: Controller._on_spawn,
    P.Reply: Controller._on_reply,
    P.WhereIs: Controller._on_whereis,
    P.Dropped: Controller._on_dropped,
}
