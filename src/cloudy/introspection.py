"""What a node and its processes look like from anywhere: `get_node_stats`,
`get_process_info_remote` (Cloud Haskell's ``getNodeStats`` and ``getProcessInfo``)
and `get_process_infos` (every process of a node), answered on the node concerned
by a registered function run with `call`, so they need no way in of their own (the
cookie guards them like any call); and tracing —
`start_tracer`, `set_trace_flags`, `stop_tracer` — which tells one process of a node
what happens there (`TraceEvent`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .closure import closure, remotable
from .identity import NodeId, ProcessId
from .links import kill
from .messages import NodeStats, PeerStats, ProcessInfo, ProcessSummary
from .node import current_node
from .node.trace import KINDS, TraceEvent
from .process import call, get_process_info, spawn_local

__all__ = [
    "TRACE_KINDS",
    "NodeStats",
    "PeerStats",
    "ProcessSummary",
    "TraceEvent",
    "get_node_stats",
    "get_process_info_remote",
    "get_process_infos",
    "set_trace_flags",
    "start_tracer",
    "stop_tracer",
]

TRACE_KINDS = KINDS
# What a tracer hears unless told otherwise: everything but each message sent and received.
DEFAULT_TRACE = frozenset(KINDS - {"sent", "received"})


@remotable
def node_stats_here() -> NodeStats:
    """This node's `NodeStats` (what `get_node_stats` runs on the node asked)."""
    return current_node().node_stats()


@remotable
def process_infos_here() -> list[ProcessSummary]:
    """Every process of this node (what `get_process_infos` runs on the node asked)."""
    return current_node().process_infos()


@remotable
def process_info_here(pid: ProcessId) -> ProcessInfo | None:
    """`get_process_info` of a process of this node (what `get_process_info_remote`
    runs on its node)."""
    return get_process_info(pid)


async def get_node_stats(node: NodeId) -> NodeStats:
    """The counts and traffic of *node* (this one or another; raises `NodeUnreachable`
    if it cannot be reached). See `NodeStats` for what each field counts."""
    if node == current_node().node_id:
        return node_stats_here()
    stats: NodeStats = await call(node, closure(node_stats_here))
    return stats


async def get_process_infos(node: NodeId) -> list[ProcessSummary]:
    """Every live process of *node* (this one or another), oldest first: its pid and
    its `ProcessInfo` (names, mailbox, what it waits in, messages in and out). Raises
    `NodeUnreachable` if *node* cannot be reached. What ``cloudy ps`` shows."""
    if node == current_node().node_id:
        return process_infos_here()
    infos: list[ProcessSummary] = await call(node, closure(process_infos_here))
    return infos


async def get_process_info_remote(pid: ProcessId) -> ProcessInfo | None:
    """`get_process_info` of *pid* on whichever node it lives (None: not alive)."""
    if pid.node == current_node().node_id:
        return get_process_info(pid)
    info: ProcessInfo | None = await call(pid.node, closure(process_info_here, pid))
    return info


def start_tracer(
    fn: Callable[..., Awaitable[Any]], *args: Any, kinds: Iterable[str] = DEFAULT_TRACE
) -> ProcessId:
    """Start ``fn(*args)`` as this node's tracer: it receives a `TraceEvent` for each
    event of *kinds* (`TRACE_KINDS`: spawned, died, sent, received, registered,
    unregistered, node_up, node_down; all but sent and received by default). One
    tracer per node: a new one replaces the last. Tracing stops when it ends.
    Raises `ValueError` for an unknown kind."""
    pid = spawn_local(fn, *args)
    try:
        current_node().tracer.start(pid, frozenset(kinds))
    except ValueError:
        kill(pid, "bad trace kinds")
        raise
    return pid


def set_trace_flags(*kinds: str) -> None:
    """Trace these *kinds* from now on (to the running tracer; no effect without one)."""
    tracer = current_node().tracer
    if tracer.pid is not None:
        tracer.start(tracer.pid, frozenset(kinds))


def stop_tracer() -> None:
    """Stop tracing on this node (the tracer process goes on; it hears no more)."""
    current_node().tracer.stop()
