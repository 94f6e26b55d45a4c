"""The table of live processes, the node's creation, and the counters that name pids,
refs and requests.

Ownership rule: this file owns the map lid -> `Process`, the node's own id and its
creation (which run of the node this is: see `cloudy.identity`); every other part is
handed this table when it is built and reads them here. Whatever arrives for a pid of
another creation is refused here, by `refuse`: as for a process that does not exist,
with one log line per sender node, creation and kind of thing refused.
"""

from __future__ import annotations

import itertools
import logging

from .. import clock
from ..identity import CREATION_BITS, MonitorRef, NodeId, ProcessId
from .mailbox import Process
from .trace import Tracer

__all__ = ["ProcessTable", "new_creation"]

log = logging.getLogger("cloudy.node")

# how many (sender, creation, kind) a node remembers having logged; past it, it
# forgets them all (and logs each again once)
_SAID_AT_MOST = 1024


def new_creation() -> int:
    """A node's creation: a random nonzero number, drawn as the running loop draws."""
    return clock.chance().randrange(1, 1 << CREATION_BITS)


class ProcessTable:
    """The processes running on one node, by local id."""

    __slots__ = ("_lids", "_refs", "_said", "creation", "node_id", "procs", "stale", "tracer")

    def __init__(self, node_id: NodeId, creation: int) -> None:
        self.node_id = node_id
        self.creation = creation
        self.procs: dict[int, Process] = {}
        self.tracer = Tracer(self.procs)  # every part that sees an event tells it
        self._lids = itertools.count(1)
        self._refs = itertools.count(1)
        self.stale = 0  # how many things were refused for a pid of another creation
        self._said: set[tuple[NodeId, int, str]] = set()

    def __len__(self) -> int:
        return len(self.procs)

    def new_pid(self) -> ProcessId:
        return ProcessId(self.node_id, next(self._lids), self.creation)

    def new_ref(self) -> MonitorRef:
        return MonitorRef(self.node_id, self.next_number(), self.creation)

    def next_number(self) -> int:
        """A number unique on this node (refs, channel ids and requests share it)."""
        return next(self._refs)

    def get(self, pid: ProcessId) -> Process | None:
        """The live local process *pid*, or None (also for any pid of another node)."""
        return self.local(pid) if pid.node == self.node_id else None

    def local(self, pid: ProcessId) -> Process | None:
        """The live process *pid* names if it names one of this node's (however the
        sender calls this node: by number and creation), else None."""
        if pid.creation == self.creation:
            return self.procs.get(pid.lid)
        return None

    def refuse(
        self, what: str, creation: int, origin: NodeId, pid: ProcessId | None = None
    ) -> None:
        """*what* (for *pid*, if given), from node *origin* and addressed to this node's
        *creation* (not this node's), is dropped: count it, and say so once per
        (*origin*, *creation*, *what*)."""
        self.stale += 1
        said = self._said
        key = (origin, creation, what)
        if key in said:
            return
        if len(said) >= _SAID_AT_MOST:
            said.clear()
        said.add(key)
        log.warning(
            "refused %s%s from %s: addressed to creation %d of %s, which is creation %d "
            "(the node restarted since, or it is not of this node); said once per sender "
            "node, creation and kind",
            what,
            "" if pid is None else f" for {pid}",
            origin,
            creation,
            self.node_id,
            self.creation,
        )
