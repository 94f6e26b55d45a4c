"""Requests to other nodes that wait for a `Reply`: remote spawn and remote call.

Ownership rule: the table of requests in flight lives here; a request fails with
`NodeUnreachable` as soon as its node is lost or this node closes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import NodeUnreachable, RemoteCallError, RemoteError, SpawnError
from ..identity import NodeId
from ..wire import protocol as P
from ..wire.codec import Undecodable
from .outbox import Outbox
from .table import ProcessTable
from .waiting import waits_in

__all__ = ["Requests"]


class Requests:
    """The requests this node has sent and not yet had answered."""

    def __init__(self, table: ProcessTable, outbox: Outbox) -> None:
        self._table = table
        self._outbox = outbox
        self._waiting: dict[int, tuple[NodeId, asyncio.Future[Any]]] = {}
        self._spawns: set[int] = set()  # the requests that are spawns (not calls)

    def __repr__(self) -> str:
        return f"<Requests {len(self._waiting)} waiting>"

    @waits_in("call")
    async def request(self, node: NodeId, name: str, args: Any, *, call: bool) -> Any:
        """Ask *node* to run closure *name* (*args* ready for the wire) and wait for its
        `Reply`: with *call* the closure's result, else the new process's pid. A failed
        spawn raises `SpawnError` (as a local one does), a failed call `RemoteCallError`."""
        table = self._table
        req = table.next_number()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[req] = (node, fut)
        if not call:
            self._spawns.add(req)
        try:
            self._outbox.enqueue(node, P.SpawnRequest(req, table.creation, name, args, call))
            return await fut
        finally:
            self._waiting.pop(req, None)
            self._spawns.discard(req)

    def _failure(self, req: int, node: NodeId, message: str) -> RemoteError:
        if req in self._spawns:
            return SpawnError(f"on {node}: {message}")
        return RemoteCallError(node, message)

    def on_reply(self, item: P.Reply) -> None:
        entry = self._waiting.get(item.req)
        if entry is None or entry[1].done():
            return
        node, fut = entry
        if item.error is not None:
            fut.set_exception(self._failure(item.req, node, item.error))
        elif type(item.value) is Undecodable:
            cause = f"undecodable reply: {item.value.cause}"
            fut.set_exception(self._failure(item.req, node, cause))
        else:
            fut.set_result(item.value)

    def node_lost(self, node: NodeId, error: NodeUnreachable) -> None:
        """Fail with *error* every request waiting on *node*."""
        for req_node, fut in list(self._waiting.values()):
            if req_node == node and not fut.done():
                fut.set_exception(error)

    def close(self) -> None:
        """Fail every request: the local node is closing."""
        for req_node, fut in list(self._waiting.values()):
            if not fut.done():
                fut.set_exception(NodeUnreachable(req_node, "the local node closed"))
