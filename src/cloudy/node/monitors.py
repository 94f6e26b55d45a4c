"""Monitors, links and node monitors — local and remote, in one place.

Theory of operation
-------------------
A monitor is a `MonitorRef` naming a (watcher, target) pair; a link is a monitor
whose firing raises `ProcessLinkException` in the watcher instead of delivering a
`ProcessMonitorNotification` (links are one-way, as in Cloud Haskell). When the
target is on this node the pair is kept in both processes' entries here; when it
is on another node, the watcher's side is kept here under that node and the
target's node keeps the other side (sent as a `Monitor` signal), so that:

* a target that ends tells each watcher (locally, or with a `Died` signal);
* a watcher that ends drops its watches (`Unmonitor` to the target's node);
* a lost connection tells every local watcher of that node's processes at once
  (`DiedDisconnect`), forgets the remote watchers of local processes, and fires
  the node monitors on it;
* a target of this node's address but another creation (a pid from before the node
  restarted) is a process that does not exist: the watcher is told `DiedUnknownId`.

Ownership rule: every table that says who watches whom lives in this file.
"""

from __future__ import annotations

from ..errors import ProcessLinkException
from ..identity import MonitorRef, NodeId, ProcessId
from ..messages import (
    AnyDiedReason,
    DiedDisconnect,
    DiedUnknownId,
    NodeMonitorNotification,
    ProcessMonitorNotification,
)
from ..wire import protocol as P
from .mailbox import Process
from .outbox import Outbox
from .table import ProcessTable

__all__ = ["Monitors"]

Watchers = dict[MonitorRef, tuple[ProcessId, bool]]


class Monitors:
    """Who watches whom, for the processes of one node."""

    def __init__(self, table: ProcessTable, outbox: Outbox) -> None:
        self._table = table
        self._outbox = outbox
        # on a local target, by its lid: ref -> (watcher, is_link)
        self._watchers: dict[int, Watchers] = {}
        # held by a local watcher, by its lid: ref -> target; and its links: target -> ref
        self._watching: dict[int, dict[MonitorRef, ProcessId]] = {}
        self._links: dict[int, dict[ProcessId, MonitorRef]] = {}
        # held by local watchers on remote targets, per remote node: ref -> (watcher,
        # target, is_link)
        self._remote_refs: dict[NodeId, dict[MonitorRef, tuple[ProcessId, ProcessId, bool]]] = {}
        # held by remote watchers on local targets, per remote node: {(target lid, ref)}
        self._remote_watchers: dict[NodeId, set[tuple[int, MonitorRef]]] = {}
        self._node_monitors: dict[NodeId, dict[MonitorRef, ProcessId]] = {}

    def __repr__(self) -> str:
        return f"<Monitors watched={len(self._watchers)} watching={len(self._watching)}>"

    def counts(self) -> tuple[int, int]:
        """How many monitors and links the local processes hold (on anyone)."""
        return sum(map(len, self._watching.values())), sum(map(len, self._links.values()))

    # --- what local processes ask for ---------------------------------------------

    def monitor(self, watcher: Process, target: ProcessId, link: bool = False) -> MonitorRef:
        """Watch *target* for *watcher*; see `cloudy.monitor` and `cloudy.link`."""
        ref = self._table.new_ref()
        me = watcher.pid
        self._watching.setdefault(me.lid, {})[ref] = target
        if link:
            self._links.setdefault(me.lid, {})[target] = ref
        if target.node == self._table.node_id:
            if self._table.local(target) is not None:
                self._watchers.setdefault(target.lid, {})[ref] = (me, link)
            else:
                if target.creation != self._table.creation:
                    self._refuse_watch(target, me.node, link)
                self._deliver_death(ref, me, target, DiedUnknownId(), link)
        else:
            self._remote_refs.setdefault(target.node, {})[ref] = (me, target, link)
            self._outbox.enqueue(target.node, P.Monitor(ref, me, target, link))
        return ref

    def unmonitor(self, watcher: Process, ref: MonitorRef) -> None:
        """Stop the monitor *ref*; a notification already delivered stays in the mailbox."""
        watching = self._watching.get(watcher.pid.lid)
        target = watching.pop(ref, None) if watching is not None else None
        if target is not None:
            self._drop_watch(ref, target)

    def unlink(self, watcher: Process, target: ProcessId) -> None:
        """Remove *watcher*'s link to *target*."""
        links = self._links.get(watcher.pid.lid)
        ref = links.pop(target, None) if links is not None else None
        if ref is not None:
            self.unmonitor(watcher, ref)

    def monitor_node(self, watcher: Process, node: NodeId) -> MonitorRef:
        """Tell *watcher* with a `NodeMonitorNotification` when the link to *node* is lost."""
        ref = self._table.new_ref()
        if node != self._table.node_id:
            self._node_monitors.setdefault(node, {})[ref] = watcher.pid
            self._outbox.ensure_connected(node)
        return ref

    def unmonitor_node(self, ref: MonitorRef) -> None:
        for refs in self._node_monitors.values():
            refs.pop(ref, None)

    def watchers_of(
        self, pid: ProcessId
    ) -> tuple[list[tuple[ProcessId, MonitorRef]], list[ProcessId]]:
        """Who monitors local process *pid* (with the refs), and who is linked to it."""
        monitors, links = [], []
        for ref, (watcher, is_link) in self._watchers.get(pid.lid, {}).items():
            if is_link:
                links.append(watcher)
            else:
                monitors.append((watcher, ref))
        return monitors, links

    # --- what happens -------------------------------------------------------------

    def process_ended(self, pid: ProcessId, reason: AnyDiedReason) -> None:
        """Tell everyone watching *pid* (a local process), and drop what it watched."""
        lid = pid.lid
        watchers = self._watchers.pop(lid, None)
        if watchers:
            for ref, (watcher, is_link) in watchers.items():
                self._notify(ref, watcher, pid, reason, is_link)
        watching = self._watching.pop(lid, None)
        if watching:
            for ref, target in watching.items():
                self._drop_watch(ref, target)
        self._links.pop(lid, None)

    def node_lost(self, node: NodeId) -> None:
        """The connection to *node* is gone: tell every watcher of it, forget its watchers."""
        reason = DiedDisconnect()
        for ref, (watcher, target, link) in self._remote_refs.pop(node, {}).items():
            self._deliver_death(ref, watcher, target, reason, link)
        for lid, ref in self._remote_watchers.pop(node, set()):
            watchers = self._watchers.get(lid)
            if watchers is not None:
                watchers.pop(ref, None)
        for ref, watcher in self._node_monitors.pop(node, {}).items():
            proc = self._table.procs.get(watcher.lid)
            if proc is not None:
                proc.deliver(NodeMonitorNotification(ref, node, reason))

    # --- signals from other nodes -----------------------------------------------------

    def on_monitor(self, item: P.Monitor) -> None:
        target = item.target
        lid = target.lid
        if self._table.local(target) is None:
            if target.creation != self._table.creation:
                self._refuse_watch(target, item.watcher.node, item.link)
            self._notify(item.ref, item.watcher, target, DiedUnknownId(), item.link)
            return
        self._watchers.setdefault(lid, {})[item.ref] = (item.watcher, item.link)
        self._remote_watchers.setdefault(item.watcher.node, set()).add((lid, item.ref))

    def on_unmonitor(self, item: P.Unmonitor) -> None:
        if item.target.creation != self._table.creation:
            return  # it was told `DiedUnknownId`: nothing to drop
        watchers = self._watchers.get(item.target.lid)
        if watchers is not None:
            watchers.pop(item.ref, None)

    def on_died(self, item: P.Died) -> None:
        refs = self._remote_refs.get(item.target.node)
        if refs is not None:
            refs.pop(item.ref, None)
        watcher = item.watcher
        if watcher.creation != self._table.creation:
            what = "a link exit" if item.link else "a monitor notification"
            self._table.refuse(what, watcher.creation, item.target.node, watcher)
            return
        self._deliver_death(item.ref, watcher, item.target, item.reason, item.link)

    # --- helpers ----------------------------------------------------------------------

    def _refuse_watch(self, target: ProcessId, origin: NodeId, link: bool) -> None:
        what = "a link (told: DiedUnknownId)" if link else "a monitor (told: DiedUnknownId)"
        self._table.refuse(what, target.creation, origin, target)

    def _notify(
        self,
        ref: MonitorRef,
        watcher: ProcessId,
        target: ProcessId,
        reason: AnyDiedReason,
        link: bool,
    ) -> None:
        if watcher.node == self._table.node_id:
            self._deliver_death(ref, watcher, target, reason, link)
        else:
            watchers = self._remote_watchers.get(watcher.node)
            if watchers is not None:
                watchers.discard((target.lid, ref))
            self._outbox.enqueue(watcher.node, P.Died(ref, watcher, target, reason, link))

    def _deliver_death(
        self,
        ref: MonitorRef,
        watcher: ProcessId,
        target: ProcessId,
        reason: AnyDiedReason,
        link: bool,
    ) -> None:
        proc = self._table.local(watcher)
        if proc is None:
            return
        watching = self._watching.get(watcher.lid)
        if watching is not None:
            watching.pop(ref, None)
        if link:
            links = self._links.get(watcher.lid)
            if links is not None and links.get(target) == ref:
                del links[target]
                if reason.abnormal:
                    proc.signal(ProcessLinkException(target, reason))
        else:
            proc.deliver(ProcessMonitorNotification(ref, target, reason))

    def _drop_watch(self, ref: MonitorRef, target: ProcessId) -> None:
        if target.node == self._table.node_id:
            watchers = self._watchers.get(target.lid)
            if watchers is not None:
                watchers.pop(ref, None)
        else:
            refs = self._remote_refs.get(target.node)
            if refs is not None and refs.pop(ref, None) is not None:
                self._outbox.enqueue(target.node, P.Unmonitor(ref, target))
