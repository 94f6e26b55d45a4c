"""Asking running nodes how they are, for ``cloudy top`` and ``cloudy ps``.

An `Observer` is a tool node of its own (port 0, the cluster's cookie): it finds the
nodes by discovery (as ``cloudy peers`` does) or is given them, and takes a `Sample`
of them: each node's `NodeStats` and, for one selected node, its processes. Every
question is a `call` answered by the node concerned (`get_node_stats`,
`get_process_infos`) — no way in but the one every node has, guarded by the cookie.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import (
    CloudyError,
    NodeId,
    NodeStats,
    ProcessSummary,
    clock,
    get_node_stats,
    get_process_infos,
)
from ..backend.localnet import DEFAULT_DISCOVERY_TIMEOUT, Backend, by_address, initialize_backend

__all__ = ["ANSWER_TIMEOUT", "Observer", "Sample", "merge_found"]

# How long a node may take to answer one question before it is shown as not answering
# (a frozen node would otherwise hold up every refresh until it is declared lost).
ANSWER_TIMEOUT = 2.0

T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    """What the nodes said at one moment.

    *at*: when (`cloudy.clock.now`); *me*: the observing node itself; *nodes*: each
    node's stats, or why there are none (a line for the user); *selected*: the node
    whose *processes* were asked for (its process list, ordered by pid, or why there
    is none; None if no node was selected).
    """

    at: float
    me: NodeId
    nodes: dict[NodeId, NodeStats | str]
    selected: NodeId | None = None
    processes: list[ProcessSummary] | str | None = None


class Observer:
    """A tool node that samples other nodes; use ``async with`` to start and end it."""

    def __init__(self, host: str, nodes: Iterable[NodeId] = (), **options: Any) -> None:
        self.backend: Backend = initialize_backend(host, 0, **options)
        self.given = list(nodes)
        self.known: list[NodeId] = list(self.given)

    async def __aenter__(self) -> Observer:
        await self.backend.new_local_node()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.backend.close()

    @property
    def me(self) -> NodeId:
        """The observing node's own id."""
        return self.backend.node.node_id

    async def discover(self, seconds: float = DEFAULT_DISCOVERY_TIMEOUT) -> list[NodeId]:
        """Add the nodes that answer discovery to `known` (nodes once found stay, so a
        node that dies shows as not answering); return `known`. With nodes given to
        the constructor, only those are watched and nothing is asked."""
        if not self.given:
            self.known = merge_found(self.known, await self.backend.find_peers(seconds), self.me)
        return self.known

    def describe_discovery(self) -> str:
        """Where discovery looks, for a message to the user when nothing answers."""
        return self.backend.describe_discovery()

    async def sample(self, selected: NodeId | None = None) -> Sample:
        """Every known node's stats, and *selected*'s processes, asked all at once."""
        nodes = list(self.known)

        async def ask() -> Sample:
            every = asyncio.gather(*(_answer(get_node_stats(n)) for n in nodes))
            processes: list[ProcessSummary] | str | None = None
            if selected is None:
                stats = await every
            else:
                stats, processes = await asyncio.gather(every, _answer(get_process_infos(selected)))
            at = clock.now()
            return Sample(at, self.me, dict(zip(nodes, stats, strict=True)), selected, processes)

        sample: Sample = await self.backend.node.run_process(ask)
        return sample


def merge_found(known: Iterable[NodeId], found: Iterable[NodeId], me: NodeId) -> list[NodeId]:
    """The nodes to watch after a round of discovery *found* some: the new ones are
    added, none *known* is dropped (a round may miss a node whose answer was lost or
    late; one that is gone shows as not answering, with the reason), *me* is left out;
    in address order."""
    return sorted({*known, *found} - {me}, key=by_address)


async def _answer(question: Awaitable[T]) -> T | str:
    """The answer to *question* (a coroutine), or a line saying why there is none."""
    try:  # (asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
        # Ctrl-C's cancellation that comes as the answer does, and top went on)
        async with asyncio.timeout(ANSWER_TIMEOUT):
            return await question
    except TimeoutError:
        return f"no answer within {ANSWER_TIMEOUT:g} s"
    except CloudyError as e:
        return str(e) or type(e).__name__
