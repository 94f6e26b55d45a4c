"""Routing: a message to a pid goes to its mailbox here, or to its node's outbox.

Every send to another node returns None, or — when that peer is busy — the future
the sending process must wait on before it sends more (see ``outbox``); the
process API records it on the sender. Local delivery never waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from ..identity import NodeId, ProcessId, SendPort
from ..messages import WhereIsReply
from ..wire import protocol as P
from ..wire.codec import to_wire
from .mailbox import Process, ReceivePortState, exit_signal
from .outbox import Outbox
from .registry import Registry
from .table import ProcessTable

__all__ = ["Busy", "Router"]

Busy = asyncio.Future[None] | None


class Router:
    """Sends for the processes of one node (`LocalNode` is one)."""

    node_id: NodeId

    def __init__(self, table: ProcessTable, outbox: Outbox, registry: Registry) -> None:
        self._table = table
        self._outbox = outbox
        self.registry = registry

    def send(self, pid: ProcessId, msg: Any) -> Busy:
        """Deliver *msg* to *pid*; silently dropped if no such process exists."""
        if pid.node == self.node_id:
            proc = self._table.procs.get(pid.lid)
            if proc is not None:
                proc.deliver(msg)
            return None
        return self._outbox.enqueue(pid.node, P.Send(pid.lid, to_wire(msg)))

    def send_many(self, pids: Iterable[ProcessId], msg: Any) -> Busy:
        """`send` *msg* to each of *pids* in turn, encoding it once for all remote ones."""
        wire: Any = None
        here = self.node_id
        procs = self._table.procs
        enqueue = self._outbox.enqueue
        busy: Busy = None
        for pid in pids:
            if pid.node == here:
                proc = procs.get(pid.lid)
                if proc is not None:
                    proc.deliver(msg)
            else:
                if wire is None:
                    wire = to_wire(msg)
                busy = enqueue(pid.node, P.Send(pid.lid, wire)) or busy
        return busy

    def nsend(self, name: str, msg: Any) -> Busy:
        """Send to the process registered locally as *name* (dropped if none)."""
        pid = self.registry.whereis(name)
        return self.send(pid, msg) if pid is not None else None

    def nsend_remote(self, node: NodeId, name: str, msg: Any) -> Busy:
        """Send to the process registered as *name* on *node*."""
        if node == self.node_id:
            return self.nsend(name, msg)
        return self._outbox.enqueue(node, P.NSend(name, to_wire(msg)))

    def new_port(self, proc: Process) -> tuple[SendPort, ReceivePortState]:
        """A new typed channel owned by *proc*."""
        if proc.ports is None:
            proc.ports = {}
        cid = self._table.next_number()
        state = proc.ports[cid] = ReceivePortState()
        return SendPort(proc.pid, cid), state

    def send_chan(self, port: SendPort, msg: Any) -> Busy:
        """Deliver *msg* on a typed channel; dropped if its owner has ended."""
        pid = port.pid
        if pid.node == self.node_id:
            proc = self._table.procs.get(pid.lid)
            state = proc.ports.get(port.cid) if proc is not None and proc.ports else None
            if state is not None:
                state.deliver(msg)
            return None
        return self._outbox.enqueue(pid.node, P.ChanSend(pid.lid, port.cid, to_wire(msg)))

    def whereis_remote_async(self, reply_to: ProcessId, node: NodeId, name: str) -> None:
        """Have *node* send a `WhereIsReply` about *name* to *reply_to*."""
        if node == self.node_id:
            self.send(reply_to, WhereIsReply(name, self.registry.whereis(name)))
        else:
            self._outbox.enqueue(node, P.WhereIs(name, reply_to))

    def exit(self, sender: ProcessId, target: ProcessId, reason: Any, kill: bool) -> None:
        """Raise an exit signal in *target* (end it, when *kill*)."""
        if target.node == self.node_id:
            proc = self._table.procs.get(target.lid)
            if proc is not None:
                proc.signal(exit_signal(sender, reason, kill))
        else:
            self._outbox.enqueue(target.node, P.Exit(target, sender, to_wire(reason), kill))
