"""The SimpleLocalnet backend itself: one node per backend, and how it finds its peers.

A `Backend` (made by `initialize_backend`) owns one `LocalNode` and, where multicast
works, a discovery daemon. `Backend.find_peers` multicasts a signed request on the
interface of the node's address (group 224.0.0.99, port 9999 by default), asks the
static peers (``peers=`` or ``CLOUDY_PEERS``, see `parse_peers`) and the peers a DNS
name gives (``peers_dns=`` or ``CLOUDY_PEERS_DNS``, see `cloudy.backend.dns`) directly,
and keeps only the nodes that this node can reach over TCP with its cookie.

Masters and slaves, built on this, are in `cloudy.backend.master_slave`; users import
both from `cloudy.backend.simplelocalnet`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from typing import Any

from .. import (
    CloudyError,
    LocalNode,
    NodeId,
    NodeMonitorNotification,
    RemoteTable,
    WhereIsReply,
    clock,
    match,
    match_if,
    monitor_node,
    receive_timeout,
    unmonitor_node,
    whereis_remote_async,
)
from ..identity import port_number
from .discovery import DEFAULT_GROUP, DEFAULT_PORT, Discovery, interface_address
from .dns import DEFAULT_INTERVAL, Lookup, dns_lookup, parse_server
from .dns_watch import DnsWatch

__all__ = [
    "DEFAULT_DISCOVERY_TIMEOUT",
    "DEFAULT_GROUP",
    "DEFAULT_PORT",
    "REACH_GRACE",
    "SLAVE_CONTROLLER",
    "Backend",
    "initialize_backend",
    "parse_peers",
]
# Also public, for `cloudy.backend.master_slave`: `whereis_on`, `by_address`.

log = logging.getLogger("cloudy.backend")

# The name a slave registers its controller under (see `cloudy.backend.master_slave`).
# find_peers asks each peer about it: any answer, "not here" included, shows that the
# peer is reachable with our cookie.
SLAVE_CONTROLLER = "slaveController"
# How long find_slaves listens for discovery answers, as Cloud Haskell's findSlaves.
DEFAULT_DISCOVERY_TIMEOUT = 1.0
# How long, past the discovery window, a node that answered may take to be reached.
REACH_GRACE = 1.0
# How many times a peer new in DNS is tried, an interval apart, before a log line says
# it is no cloudy node (a pod's address is in DNS before its node listens).
REACH_ATTEMPTS = 3


def parse_peers(peers: Iterable[NodeId | str] | str | None) -> list[NodeId]:
    """Static peers from a list or a comma-separated string of ``host:port`` or node ids.

    Raises `ValueError` naming the entry that is neither.
    """
    if peers is None:
        return []
    items = peers.split(",") if isinstance(peers, str) else list(peers)
    out: list[NodeId] = []
    for item in items:
        if isinstance(item, NodeId):
            out.append(item)
        elif item.strip():
            out.append(NodeId.parse(item.strip()))
    return out


class Backend:
    """One node's SimpleLocalnet set-up: its address, its table, how it finds others.

    Made by `initialize_backend`; use ``async with backend:`` (or `close`) to end
    its node and discovery daemon.
    """

    def __init__(
        self,
        host: str,
        port: int | str,
        remote_table: RemoteTable | None = None,
        *,
        cookie: str | bytes | None = None,
        multicast_group: str = DEFAULT_GROUP,
        multicast_port: int = DEFAULT_PORT,
        peers: Iterable[NodeId | str] | str | None = None,
        peers_dns: str | None = None,
        peers_port: int | None = None,
        dns_interval: float = DEFAULT_INTERVAL,
        dns_server: str | None = None,
        dns_lookup: Lookup | None = None,
        discovery: bool | None = None,
        **node_options: Any,
    ) -> None:
        self.host = host
        self.port = port_number(port)
        self.remote_table = remote_table
        self.peers = parse_peers(os.environ.get("CLOUDY_PEERS") if peers is None else peers)
        self._dns = self._dns_watch(peers_dns, peers_port, dns_interval, dns_server, dns_lookup)
        if discovery is None:  # found by DNS: by DNS only (multicast seldom crosses it)
            discovery = self._dns is None
        self.multicast_group = multicast_group
        self.multicast_port = multicast_port
        self._cookie = cookie
        self._node_options = node_options
        self._node: LocalNode | None = None
        self._starting: asyncio.Lock | None = None
        self._discovery: Discovery | None = None
        self._dns_task: asyncio.Task[None] | None = None
        self._want_discovery = discovery
        self.discovery_error: str | None = None
        # nodes with a different cookie that answered the last `find_peers` (a count only)
        self.other_cookies = 0
        # What the discovery daemon would use, checked now so that errors come early.
        self.interface: str | None = None
        if discovery:
            try:
                self.interface = interface_address(host)
            except OSError as e:
                if not self.peers and self._dns is None:
                    raise
                # an IPv6-only host, say: the static peers will do
                log.warning("no multicast discovery: %s; asking the peers only", e)
                self._want_discovery = False

    def __repr__(self) -> str:
        return f"<Backend {self.host}:{self.port} discovery={self.describe_discovery()}>"

    def describe_discovery(self) -> str:
        """Where this backend looks for peers, for messages to the user."""
        parts = []
        if self._want_discovery:
            parts.append(
                f"multicast {self.multicast_group}:{self.multicast_port} via {self.interface}"
            )
        if self.peers:
            parts.append("peers " + ",".join(f"{p.host}:{p.port}" for p in self.peers))
        if self._dns is not None:
            parts.append(self._dns.describe())
        return " and ".join(parts) or "nothing (no multicast, no peers)"

    def _dns_watch(
        self,
        name: str | None,
        port: int | None,
        interval: float,
        server: str | None,
        lookup: Lookup | None,
    ) -> DnsWatch | None:
        name = os.environ.get("CLOUDY_PEERS_DNS") if name is None else name
        if not name:
            return None
        port = self.port if port is None else port_number(port)  # 0: SRV records only
        if not interval > 0:
            raise ValueError(f"a DNS interval must be above 0 s, not {interval!r}")
        if lookup is None:
            server = os.environ.get("CLOUDY_DNS_SERVER") if server is None else server
            lookup = dns_lookup(parse_server(server) if server else None)
        return DnsWatch(name, port, lookup, interval=interval, on_new=self._reach)

    def _reach(self, peer: NodeId) -> None:
        """Connect to *peer*, new in DNS; say so if, asked a few times (it may be
        starting), it is no cloudy node with our cookie."""
        node, watch = self._node, self._dns
        if node is None or node.closed or watch is None or peer == node.node_id:
            return

        async def reach() -> None:
            for attempt in range(REACH_ATTEMPTS):
                if attempt:
                    await asyncio.sleep(watch.interval)
                    if peer not in watch.peers:
                        return  # gone from DNS meanwhile: nothing to say
                deadline = clock.now() + node.connect_timeout
                if await whereis_on(node, peer, SLAVE_CONTROLLER, deadline) is not None:
                    return
            log.warning(
                "DNS discovery: %s:%d, named by %s, does not answer as a cloudy node "
                "with our cookie",
                peer.host,
                peer.port,
                watch.name,
            )

        node.fork_process(reach)

    @property
    def dns(self) -> DnsWatch | None:
        """The DNS name this backend polls for peers, if any (its peers, its last error)."""
        return self._dns

    @property
    def node(self) -> LocalNode:
        """The backend's node, once `new_local_node` has started it."""
        if self._node is None:
            raise CloudyError("the backend has no node yet: await backend.new_local_node()")
        return self._node

    async def new_local_node(self) -> LocalNode:
        """Start the backend's node and its discovery daemon (once); return the node.

        Raises `OSError` if the node's address cannot be bound (for instance, the
        port is in use).
        """
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._node is not None:
                return self._node
            node = LocalNode(
                self.host, self.port, self.remote_table, cookie=self._cookie, **self._node_options
            )
            await node.start()
            self._node = node
            if self._dns is not None:
                self._dns_task = asyncio.get_running_loop().create_task(self._dns.run())
            if self._want_discovery and self.interface is not None:
                daemon = Discovery(
                    cookie=node.cookie,
                    interface=self.interface,
                    answer=self._answer,
                    group=self.multicast_group,
                    port=self.multicast_port,
                )
                try:
                    await daemon.start()
                except OSError as e:
                    self.discovery_error = str(e)
                    log.warning("%s; only static peers will be found (--peers)", e)
                else:
                    self._discovery = daemon
            return node

    def _answer(self) -> NodeId | None:
        node = self._node
        return None if node is None or node.closed else node.node_id

    @property
    def dropped_datagrams(self) -> dict[str, int]:
        """Datagrams the discovery daemon ignored so far, by kind (garbage, cookie, ...)."""
        return dict(self._discovery.dropped) if self._discovery is not None else {}

    async def find_peers(
        self,
        timeout: float = DEFAULT_DISCOVERY_TIMEOUT,  # noqa: ASYNC109 - as Cloud Haskell's
    ) -> list[NodeId]:
        """The nodes, this one included, that answer a discovery request within *timeout* s.

        Nodes answer a multicast request; static peers are asked directly over TCP.
        Only nodes that answered this request and that this node can reach with its
        cookie are returned (sorted), so nodes that have died are left out.
        """
        node = await self.new_local_node()
        # every check ends by then: a peer not reached by the deadline is left out
        deadline = clock.now() + timeout + REACH_GRACE
        checks: dict[NodeId, asyncio.Task[WhereIsReply | None]] = {}
        try:
            async with asyncio.TaskGroup() as group:

                def found(peer: NodeId) -> None:
                    if peer not in checks:
                        checks[peer] = group.create_task(
                            whereis_on(node, peer, SLAVE_CONTROLLER, deadline)
                        )

                found(node.node_id)  # this node answers too, multicast or not
                for peer in self.peers:
                    found(peer)
                if self._dns is not None:
                    await self._dns.first_answer(timeout)
                    for peer in self._dns.peers:
                        found(peer)
                if self._discovery is not None:
                    strangers: set[bytes] = set()
                    await self._discovery.ask(timeout, found, strangers)
                    self.other_cookies = len(strangers)
        except ExceptionGroup as errors:
            # the error itself (an OSError from discovery, say), not a group of one
            raise errors.exceptions[0] from None
        alive = [
            peer
            for peer, task in checks.items()
            if not task.cancelled() and task.result() is not None
        ]
        return sorted(alive, key=by_address)

    async def close(self) -> None:
        """End the discovery daemon, the DNS polls and the node."""
        if self._dns_task is not None:
            self._dns_task.cancel()
            self._dns_task = None
        if self._discovery is not None:
            self._discovery.close()
            self._discovery = None
        if self._node is not None:
            await self._node.close()

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def initialize_backend(
    host: str, port: int | str, remote_table: RemoteTable | None = None, **options: Any
) -> Backend:
    """A backend for a node at *host*:*port* (port may be a string; 0 picks one).

    Options: ``cookie``, ``multicast_group`` (224.0.0.99), ``multicast_port`` (9999),
    ``peers`` (static peers, default ``$CLOUDY_PEERS``), ``peers_dns`` (a DNS name
    whose SRV or A/AAAA records name the peers, default ``$CLOUDY_PEERS_DNS``; with
    ``peers_port`` for A/AAAA records (default: *port*), ``dns_interval`` (5 s),
    ``dns_server`` (``address[:port]``, default ``$CLOUDY_DNS_SERVER``, else the
    system's) or ``dns_lookup`` (a `cloudy.backend.dns.Lookup` of your own)),
    ``discovery`` (False: no multicast; by default on unless ``peers_dns`` is given),
    and any `LocalNode` option (``ssl``, ``connect_timeout``,
    ``heartbeat_timeout``, ``max_frame_size``). Raises `OSError` if *host* does not
    resolve, `ValueError` for a bad port or peer.
    """
    return Backend(host, port, remote_table, **options)


def by_address(node: NodeId) -> tuple[str, int]:
    """The order in which the backend lists nodes: by host, then port."""
    return (node.host, node.port)


async def whereis_on(
    node: LocalNode, peer: NodeId, name: str, deadline: float
) -> WhereIsReply | None:
    """*peer*'s answer about *name*, or None if it is not reached (with our cookie) by
    *deadline* (a `cloudy.clock.now` time). One process per peer: an answer "not here"
    does not name its node."""
    if peer == node.node_id:
        return WhereIsReply(name, node.whereis(name))

    async def ask() -> WhereIsReply | None:
        ref = monitor_node(peer)
        whereis_remote_async(peer, name)
        answer = await receive_timeout(
            max(deadline - clock.now(), 0.0),
            match(WhereIsReply, _same_reply),
            match_if(NodeMonitorNotification, lambda m: m.ref == ref, _no_reply),
        )
        unmonitor_node(ref)
        return answer

    result: WhereIsReply | None = await node.run_process(ask)
    return result


def _same_reply(reply: WhereIsReply) -> WhereIsReply | None:
    return reply


def _no_reply(_: NodeMonitorNotification) -> WhereIsReply | None:
    return None  # the node is lost: no answer will come
