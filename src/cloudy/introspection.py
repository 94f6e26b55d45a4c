"""What a node and its processes look like from anywhere: `get_node_stats` and
`get_process_info_remote` (Cloud Haskell's ``getNodeStats`` and ``getProcessInfo``),
answered on the node concerned by a registered function run with `call`, so they
need no way in of their own (the cookie guards them like any call)."""

from __future__ import annotations

from .closure import closure, remotable
from .identity import NodeId, ProcessId
from .message import Message
from .messages import ProcessInfo
from .node import current_node
from .process import call, get_process_info

__all__ = ["NodeStats", "get_node_stats", "get_process_info_remote"]


class NodeStats(Message):
    """A node's counts: live processes, registered names, and the monitors and links
    its processes hold."""

    node: NodeId
    processes: int
    registered_names: int
    monitors: int
    links: int


@remotable
def node_stats_here() -> NodeStats:
    """This node's `NodeStats` (what `get_node_stats` runs on the node asked)."""
    node = current_node()
    monitors, links = node.monitors.counts()
    return NodeStats(node.node_id, node.process_count(), len(node.registry), monitors, links)


@remotable
def process_info_here(pid: ProcessId) -> ProcessInfo | None:
    """`get_process_info` of a process of this node (what `get_process_info_remote`
    runs on its node)."""
    return get_process_info(pid)


async def get_node_stats(node: NodeId) -> NodeStats:
    """The counts of *node* (this one or another; raises `NodeUnreachable` if it
    cannot be reached)."""
    if node == current_node().node_id:
        return node_stats_here()
    stats: NodeStats = await call(node, closure(node_stats_here))
    return stats


async def get_process_info_remote(pid: ProcessId) -> ProcessInfo | None:
    """`get_process_info` of *pid* on whichever node it lives (None: not alive)."""
    if pid.node == current_node().node_id:
        return get_process_info(pid)
    info: ProcessInfo | None = await call(pid.node, closure(process_info_here, pid))
    return info
