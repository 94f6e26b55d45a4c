"""The table of live processes, and the counters that name pids, refs and requests.

Ownership rule: this file owns the map lid -> `Process` and the node's own id;
every other part is handed this table when it is built and reads it here.
"""

from __future__ import annotations

import itertools

from ..identity import MonitorRef, NodeId, ProcessId
from .mailbox import Process
from .trace import Tracer

__all__ = ["ProcessTable"]


class ProcessTable:
    """The processes running on one node, by local id."""

    __slots__ = ("_lids", "_refs", "node_id", "procs", "tracer")

    def __init__(self, node_id: NodeId) -> None:
        self.node_id = node_id
        self.procs: dict[int, Process] = {}
        self.tracer = Tracer(self.procs)  # every part that sees an event tells it
        self._lids = itertools.count(1)
        self._refs = itertools.count(1)

    def __len__(self) -> int:
        return len(self.procs)

    def new_pid(self) -> ProcessId:
        return ProcessId(self.node_id, next(self._lids))

    def new_ref(self) -> MonitorRef:
        return MonitorRef(self.node_id, self.next_number())

    def next_number(self) -> int:
        """A number unique on this node (refs, channel ids and requests share it)."""
        return next(self._refs)

    def get(self, pid: ProcessId) -> Process | None:
        """The live local process *pid*, or None (also for any pid of another node)."""
        return self.procs.get(pid.lid) if pid.node == self.node_id else None
