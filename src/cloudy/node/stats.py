"""What a node tells of itself and its processes: `ProcessInfo`, `NodeStats`, and the
mailboxes of its registered processes.

Theory of operation
-------------------
Everything here is read on demand, on the node's loop, from what the parts keep
anyway (the process table, the registry, the monitors, the transport's connections
and its `Traffic`): asking costs the asker, never a message going by. A node's
traffic totals are the sums of its closed connections plus its live ones' own
counts (see ``cloudy.transport.traffic``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import clock
from ..identity import NodeId
from ..messages import NodeStats, PeerStats, ProcessInfo, ProcessSummary
from ..transport.tcp import LOCAL, Connection, ConnState, Transport
from ..transport.traffic import STALE_PID
from .mailbox import Process
from .monitors import Monitors
from .registry import Registry
from .table import ProcessTable
from .waiting import waiting_in

__all__ = ["NodeSnapshot", "Stats"]


@dataclass(frozen=True)
class NodeSnapshot:
    """A node's stats and its mailboxes, taken at once on its loop (what a scrape of
    its metrics shows)."""

    stats: NodeStats
    mailboxes: dict[str, int]  # registered name -> its mailbox length
    mailbox_messages: int  # in every mailbox together
    mailbox_longest: int


class Stats:
    """Reads one node's parts into the messages that describe it."""

    def __init__(self, table: ProcessTable, registry: Registry, monitors: Monitors) -> None:
        self._table = table
        self._registry = registry
        self._monitors = monitors

    def _count(self) -> None:
        """Start counting every process's messages, from zero, if not yet (the fast
        local send does not count: see `Tracer.count`)."""
        tracer = self._table.tracer
        if not tracer.counting:
            tracer.count()
            for proc in self._table.procs.values():
                proc.messages_in = proc.messages_out = 0

    def process_info(self, proc: Process) -> ProcessInfo:
        """What is known of local process *proc* (its messages are counted from the
        first time anyone asked about this node's processes)."""
        self._count()
        pid = proc.pid
        monitors, links = self._monitors.watchers_of(pid)
        return ProcessInfo(
            self._table.node_id,
            self._registry.names_of(pid),
            len(proc.mailbox) if proc.mailbox else 0,
            monitors,
            links,
            waiting_in(proc.task),
            proc.messages_in,
            proc.messages_out,
        )

    def process_infos(self) -> list[ProcessSummary]:
        """Every live process, oldest first."""
        procs = sorted(self._table.procs.items())
        return [ProcessSummary(proc.pid, self.process_info(proc)) for _, proc in procs]

    def snapshot(self, transport: Transport | None) -> NodeSnapshot:
        """What a scrape of the node's metrics shows: its stats and its mailboxes."""
        lengths = [len(p.mailbox) for p in self._table.procs.values() if p.mailbox]
        named = {}
        for name, pid in self._registry.items():
            proc = self._table.get(pid)
            if proc is not None:
                named[name] = len(proc.mailbox) if proc.mailbox else 0
        stats = self.node_stats(transport)
        return NodeSnapshot(stats, named, sum(lengths), max(lengths, default=0))

    def node_stats(self, transport: Transport | None) -> NodeStats:
        """This node's counts (no traffic before it starts)."""
        monitors, links = self._monitors.counts()
        table = self._table
        counts = (table.node_id, len(table), len(self._registry), monitors, links)
        refused = {STALE_PID: table.stale} if table.stale else {}
        if transport is None:
            return NodeStats(*counts, frames_refused=refused, creation=table.creation)
        now = clock.now()
        traffic = transport.traffic
        live = transport.connections()
        peers = [_peer(conn, now, transport) for conn in live]
        peers += [_peer(conn, now, transport) for conn in transport.closed.values()]
        return NodeStats(
            *counts,
            uptime=now - traffic.started,
            messages_in=traffic.messages_in + sum(c.messages_in for c in live),
            messages_out=traffic.messages_out + sum(c.messages_out for c in live),
            bytes_in=traffic.bytes_in + sum(c.bytes_in for c in live),
            bytes_out=traffic.bytes_out + sum(c.bytes_out for c in live),
            peers=peers,
            connection_losses=traffic.connection_losses,
            heartbeats_missed=traffic.heartbeats_missed,
            frames_refused=dict(traffic.refused) | refused,
            creation=table.creation,
        )


def _peer(conn: Connection, now: float, transport: Transport) -> PeerStats:
    silent = now - conn.last_recv
    if conn.state is ConnState.CLOSED or (
        silent > transport.heartbeat_timeout and not conn.reading_paused
    ):
        heartbeat = "lost"
    elif silent > transport.late_after and not conn.reading_paused:
        heartbeat = "late"
    else:
        heartbeat = "ok"
    state = "busy" if conn.state is ConnState.UP and conn.busy else conn.state.value
    # before its handshake, a connection that called us is known by its address only
    node = conn.dialled or conn.peer or NodeId(conn.peer_host, conn.peer_port)
    return PeerStats(
        node,
        state,
        silent,
        heartbeat,
        conn.messages_in,
        conn.messages_out,
        conn.bytes_in,
        conn.bytes_out,
        "unix" if conn.peer_host == LOCAL else "tcp",
    )
