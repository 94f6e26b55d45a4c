"""Tracing: what happens on a node, told to one tracer process as `TraceEvent`s
(Cloud Haskell's tracer, in a Pythonic form).

Ownership rule: the node's one `Tracer` hangs on its `ProcessTable`, where every part
that spawns, ends, sends, delivers or registers already looks; each asks the tracer
whether its kind of event is wanted (one attribute read when tracing is off) and
emits it. Events go straight into the tracer's mailbox; the tracer's own sends and
receives are not traced, so it can never feed itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..identity import NodeId, ProcessId
from ..message import Message

if TYPE_CHECKING:
    from .mailbox import Process

__all__ = ["KINDS", "TraceEvent", "Tracer"]

KINDS = frozenset(
    {"spawned", "died", "sent", "received", "registered", "unregistered", "node_up", "node_down"}
)


class TraceEvent(Message):
    """One thing that happened: *kind* (one of `KINDS`), the process it happened to
    (*pid*), the other one if any (*other*: the recipient of a send, the sender of a
    delivery), the peer *node* (node up/down), and a *detail* (the message's type, the
    reason of a death, the name registered)."""

    kind: str
    pid: ProcessId | None = None
    other: ProcessId | None = None
    node: NodeId | None = None
    detail: str = ""


class Tracer:
    """The node's tracer: who gets the events, and which kinds."""

    __slots__ = ("counting", "kinds", "messages", "pid", "procs", "receives", "sends", "tracing")

    def __init__(self, procs: dict[int, Process]) -> None:
        self.procs = procs
        self.pid: ProcessId | None = None
        self.kinds: frozenset[str] = frozenset()
        # read on every send and delivery: `tracing` is `sends or receives` (a send is
        # traced), `messages` is `tracing or counting` (a local send leaves its fast
        # path, which neither traces nor counts)
        self.sends = self.receives = self.tracing = self.messages = False
        # whether every process's messages are counted (`ProcessInfo.messages_in`,
        # `messages_out`): from the first time anyone asks for them, like Erlang's
        # statistics that etop turns on; a node nobody watches pays nothing
        self.counting = False

    def start(self, pid: ProcessId, kinds: frozenset[str]) -> None:
        unknown = kinds - KINDS
        if unknown:
            raise ValueError(f"unknown trace kinds {sorted(unknown)} (known: {sorted(KINDS)})")
        self.pid, self.kinds = pid, kinds
        self.sends, self.receives = "sent" in kinds, "received" in kinds
        self.tracing = self.sends or self.receives
        self.messages = self.tracing or self.counting

    def stop(self) -> None:
        self.pid, self.kinds = None, frozenset()
        self.sends = self.receives = self.tracing = False
        self.messages = self.counting

    def count(self) -> None:
        """Count every process's messages from now on (local sends leave the fast path)."""
        self.counting = self.messages = True

    def emit(
        self,
        kind: str,
        pid: ProcessId | None = None,
        other: ProcessId | None = None,
        node: NodeId | None = None,
        detail: str = "",
    ) -> None:
        tracer = self.pid
        if tracer is None or kind not in self.kinds or tracer in (pid, other):
            return
        proc = self.procs.get(tracer.lid)
        if proc is None:  # the tracer ended: tracing stops
            self.stop()
            return
        proc.deliver(TraceEvent(kind, pid, other, node, detail))
