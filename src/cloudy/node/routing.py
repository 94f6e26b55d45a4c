"""Routing: a message to a pid goes to its mailbox here, or to its node's outbox.

Every send to another node returns None, or — when that peer is busy — the future
the sending process must wait on before it sends more (see ``outbox``); the
process API records it on the sender. Local delivery never waits.

Prefix delivery (Cloud Haskell's rule): messages from one process to another
arrive in order, or not at all after some point — never a hole followed by later
messages. So a sender remembers, for each remote process it sends to, how many
times that process's node had been lost (its *generation*) when it first did;
once the node has been lost since, its later sends to that process are dropped,
with one log line, until it calls `reconnect`. Sending to a process it never sent
to before is never held back. A send without a sender (``usend``, the node's own
signals) is not held to this: it may lose messages in between, and reconnects by
itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from ..identity import NodeId, ProcessId, SendPort
from ..messages import WhereIsReply
from ..wire import protocol as P
from ..wire.codec import to_wire
from .mailbox import CURRENT_PROCESS, Process, ReceivePortState, exit_signal
from .outbox import Outbox
from .registry import Registry
from .table import ProcessTable

__all__ = ["Busy", "Router"]

log = logging.getLogger("cloudy.node")

Busy = asyncio.Future[None] | None


class Router:
    """Sends for the processes of one node (a part of its `LocalNode`, which offers
    them as its own)."""

    def __init__(
        self, table: ProcessTable, outbox: Outbox, registry: Registry, node_id: NodeId
    ) -> None:
        #: The node's id (its node sets it again once it listens on a port it chose).
        self.node_id = node_id
        self._table = table
        self._outbox = outbox
        self.registry = registry
        #: Which run of its address this node is (see `cloudy.identity`).
        self.creation = table.creation

    def may_send(self, sender: Process, to: ProcessId) -> bool:
        """Whether *sender* may send to *to*: not if messages to it may have been lost."""
        generation = self._outbox.generations.get(to.node, 0)
        contacts = sender.contacts
        if contacts is None:
            sender.contacts = {to: generation}
            sender.last_to = to
            return True
        seen = contacts.setdefault(to, generation)
        if seen == generation:
            sender.last_to = to
            return True
        if seen >= 0:
            contacts[to] = -1  # said once; `reconnect` clears it
            log.warning(
                "process %s: messages to %s are dropped since the connection to its node "
                "was lost (call reconnect to send again)",
                sender.pid,
                to,
            )
        return False

    def reconnect(self, sender: Process, to: ProcessId | NodeId) -> None:
        """Let *sender* send to *to* again, or to every process of node *to*."""
        contacts = sender.contacts
        if contacts is None:
            return
        if isinstance(to, ProcessId):
            contacts.pop(to, None)
        else:
            for pid in [pid for pid in contacts if pid.node == to]:
                del contacts[pid]

    def send(self, pid: ProcessId, msg: Any, sender: Process | None = None) -> Busy:
        """Deliver *msg* to *pid*; silently dropped if no such process exists (with a
        log line if *pid* is of this node's address but another creation)."""
        if self._table.tracer.tracing:
            self._trace(pid, msg, sender)
        if pid.node == self.node_id:
            if pid.creation != self.creation:
                self._table.refuse("a message", pid.creation, self.node_id, pid)
                return None
            proc = self._table.procs.get(pid.lid)
            if proc is not None:
                proc.deliver(msg)
            return None
        outbox = self._outbox
        # the fast path: the same pid as last time, and no node was ever lost
        fast = sender is None or (pid is sender.last_to and not outbox.generations)
        if not fast and not self.may_send(sender, pid):  # type: ignore[arg-type]
            return None
        return outbox.enqueue(pid.node, P.Send(pid.lid, pid.creation, to_wire(msg)))

    def send_many(self, pids: Iterable[ProcessId], msg: Any, sender: Process | None = None) -> Busy:
        """`send` *msg* to each of *pids* in turn, encoding it once for all remote ones."""
        if self._table.tracer.tracing:
            pids = list(pids)
            for pid in pids:
                self._trace(pid, msg, sender)
        wire: Any = None
        here = self.node_id
        creation = self.creation
        procs = self._table.procs
        outbox = self._outbox
        enqueue = outbox.enqueue
        generations = outbox.generations
        contacts = None
        if sender is not None:
            contacts = sender.contacts
            if contacts is None:
                contacts = sender.contacts = {}
        busy: Busy = None
        sent = 0
        for pid in pids:
            sent += 1
            if pid.node == here:
                proc = procs.get(pid.lid) if pid.creation == creation else None
                if proc is not None:
                    proc.deliver(msg)
                elif pid.creation != creation:
                    self._table.refuse("a message", pid.creation, here, pid)
                continue
            if contacts is not None:  # `may_send`, inlined for its common case
                generation = generations.get(pid.node, 0) if generations else 0
                seen = contacts.setdefault(pid, generation)
                if seen != generation and not self.may_send(sender, pid):  # type: ignore[arg-type]
                    continue
            if wire is None:
                wire = to_wire(msg)
            busy = enqueue(pid.node, P.Send(pid.lid, pid.creation, wire)) or busy
        if sender is not None:
            sender.messages_out += sent
        return busy

    def _trace(
        self, pid: ProcessId, msg: Any, sender: Process | None, channel: bool = False
    ) -> None:
        """The send of *msg* to *pid* (on one of its channels, if *channel*), and its
        delivery if *pid* is here. The sender is the calling process (also for a
        `usend` or `nsend`, which pass none: only tracing looks it up)."""
        if sender is None:
            sender = CURRENT_PROCESS.get(None)
        tracer, frm = self._table.tracer, None if sender is None else sender.pid
        kind = type(msg).__name__
        if channel:
            kind += " (channel)"
        tracer.emit("sent", frm, pid, detail=kind)
        if self._table.get(pid) is not None:
            tracer.emit("received", pid, frm, detail=kind)

    def nsend(self, name: str, msg: Any) -> Busy:
        """Send to the process registered locally as *name* (dropped if none)."""
        pid = self.registry.whereis(name)
        return self.send(pid, msg) if pid is not None else None

    def nsend_remote(
        self, node: NodeId, name: str, msg: Any, sender: Process | None = None
    ) -> Busy:
        """Send to the process registered as *name* on *node*."""
        if node == self.node_id:
            return self.nsend(name, msg)
        tracer = self._table.tracer
        if tracer.sends:
            frm = sender or CURRENT_PROCESS.get(None)
            detail = f"{type(msg).__name__} (to {name!r})"
            tracer.emit("sent", None if frm is None else frm.pid, node=node, detail=detail)
        # a name stands for a process of that node: held to the rule as pid 0 there
        if sender is not None and not self.may_send(sender, ProcessId(node, 0)):
            return None
        return self._outbox.enqueue(node, P.NSend(name, to_wire(msg)))

    def next_number(self) -> int:
        """A number unique on this node (refs, channels, requests and spawns share it)."""
        return self._table.next_number()

    def new_port(self, proc: Process) -> tuple[SendPort, ReceivePortState]:
        """A new typed channel owned by *proc*."""
        if proc.ports is None:
            proc.ports = {}
        cid = self._table.next_number()
        state = proc.ports[cid] = ReceivePortState()
        return SendPort(proc.pid, cid), state

    def send_chan(self, port: SendPort, msg: Any, sender: Process | None = None) -> Busy:
        """Deliver *msg* on a typed channel; dropped if its owner has ended."""
        pid = port.pid
        if self._table.tracer.tracing:
            self._trace(pid, msg, sender, channel=True)
        if pid.node == self.node_id:
            proc = self._table.local(pid)
            state = proc.ports.get(port.cid) if proc is not None and proc.ports else None
            if state is not None:
                state.deliver(msg)
            elif pid.creation != self.creation:
                self._table.refuse("a channel message", pid.creation, self.node_id, pid)
            return None
        if sender is not None and not self.may_send(sender, pid):
            return None
        item = P.ChanSend(pid.lid, pid.creation, port.cid, to_wire(msg))
        return self._outbox.enqueue(pid.node, item)

    def whereis_remote_async(self, reply_to: ProcessId, node: NodeId, name: str) -> None:
        """Have *node* send a `WhereIsReply` about *name* to *reply_to*."""
        if node == self.node_id:
            self.send(reply_to, WhereIsReply(name, self.registry.whereis(name)))
        else:
            self._outbox.enqueue(node, P.WhereIs(name, reply_to))

    def exit(self, sender: ProcessId, target: ProcessId, reason: Any, kill: bool) -> None:
        """Raise an exit signal in *target* (end it, when *kill*)."""
        if target.node == self.node_id:
            proc = self._table.local(target)
            if proc is not None:
                proc.signal(exit_signal(sender, reason, kill))
            elif target.creation != self.creation:
                self._table.refuse("an exit signal", target.creation, self.node_id, target)
        else:
            self._outbox.enqueue(target.node, P.Exit(target, sender, to_wire(reason), kill))
