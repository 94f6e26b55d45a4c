"""`NodeService`: something that runs beside a node, handed to it when it is made.

A node knows of its services only this protocol: each is started, in the order
given, once the node listens (so that it can read the node's id, host and
`LocalNode.snapshot`), and closed, in reverse order, before the node closes its
connections. A service whose start fails fails the node's start, and the node then
leaves nothing running. The Prometheus exporter (`cloudy.observe.metrics.Metrics`)
is one; the command line hands it in for ``--metrics-port``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .local_node import LocalNode

__all__ = ["NodeService"]


class NodeService(Protocol):
    """What runs beside a node: `start`, once the node listens; `close`, before it
    closes."""

    async def start(self, node: LocalNode) -> None: ...

    async def close(self) -> None: ...
