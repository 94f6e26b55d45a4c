"""A node's counters for Prometheus: ``LocalNode(services=[Metrics(N)])`` serves them
over HTTP (``cloudy slave --metrics-port N`` hands the node that service).

Theory of operation
-------------------
prometheus-client is an optional extra (``pip install 'cloudy[metrics]'``); asking for
metrics without it raises `MetricsUnavailable`, which says so. Nothing is counted for
Prometheus as messages go by: a custom collector reads the node's own counters (its
`LocalNode.snapshot`: `cloudy.NodeStats` and its mailboxes) when Prometheus scrapes.
prometheus-client's HTTP server answers in a thread of its own; the collector never
reads the node from there, but asks the node's event loop for a snapshot
(``call_soon_threadsafe``) and waits for it, at most `SNAPSHOT_TIMEOUT` seconds. A
node that does not answer in time (closed, or its loop stuck) is scraped as
``cloudy_up 0`` and nothing else.

The families, each labelled with the node (``node="nid://host:port:0"``)::

    cloudy_up                           1 if the node answered this scrape
    cloudy_uptime_seconds               since the node started
    cloudy_processes, cloudy_registered_names, cloudy_monitors, cloudy_links
    cloudy_messages_in_total, cloudy_messages_out_total    items from/to all peers ever
    cloudy_bytes_in_total, cloudy_bytes_out_total          bytes from/to all peers ever
    cloudy_peer_messages_in_total{peer}, cloudy_peer_messages_out_total{peer}
    cloudy_peer_bytes_in_total{peer}, cloudy_peer_bytes_out_total{peer}
    cloudy_peer_silent_seconds{peer}    (connections open now, summed per peer node)
    cloudy_connection_losses_total, cloudy_heartbeats_missed_total
    cloudy_frames_refused_total{reason}
    cloudy_mailbox_length{name}         registered processes: the `MAX_MAILBOX_SERIES`
                                        longest mailboxes, so the labels stay bounded
    cloudy_mailbox_messages             in every mailbox of the node together
    cloudy_mailbox_longest              the longest mailbox of any process
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

from .. import CloudyError, NodeSnapshot, NodeStats
from ..errors import listen_error

if TYPE_CHECKING:
    from .. import LocalNode

__all__ = [
    "MAX_MAILBOX_SERIES",
    "SNAPSHOT_TIMEOUT",
    "Metrics",
    "MetricsServer",
    "MetricsUnavailable",
    "Snapshot",
    "require_prometheus",
]

log = logging.getLogger("cloudy.observe.metrics")

# Seconds a scrape waits for the node's loop to take its snapshot.
SNAPSHOT_TIMEOUT = 5.0
# Registered processes whose mailbox length gets a series of its own.
MAX_MAILBOX_SERIES = 100


class MetricsUnavailable(CloudyError, ImportError):
    """Metrics were asked for, but prometheus-client is not installed."""


def require_prometheus() -> None:
    """Raise `MetricsUnavailable`, saying what to install, without prometheus-client."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise MetricsUnavailable(
            "metrics need prometheus-client: pip install 'cloudy[metrics]'"
        ) from None


Snapshot = NodeSnapshot  # (its name here before the node took it)


class Metrics:
    """A `cloudy.NodeService` serving its node's counters at ``http://HOST:PORT/metrics``
    (*host*: the node's own unless given; *port* 0: any free one, then read `port`).
    Made without prometheus-client it raises `MetricsUnavailable` at once."""

    def __init__(self, port: int = 0, host: str | None = None) -> None:
        require_prometheus()
        self.port = port
        self.host = host
        self._server: MetricsServer | None = None

    async def start(self, node: LocalNode) -> None:
        self._server = MetricsServer(self.host or node.host, self.port, node.snapshot)
        self.port = self._server.port

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.close()


class _Collector:
    """prometheus-client's Collector: reads a snapshot of the node at each scrape."""

    def __init__(
        self, snapshot: Callable[[], NodeSnapshot], loop: asyncio.AbstractEventLoop
    ) -> None:
        self._snapshot = snapshot
        self._loop = loop
        self._node = ""  # the node's id, from its last snapshot

    def describe(self) -> list[Any]:
        return []  # no scrape at registration

    def _take(self) -> NodeSnapshot | None:
        done: concurrent.futures.Future[NodeSnapshot] = concurrent.futures.Future()

        def take() -> None:
            if done.set_running_or_notify_cancel():
                try:
                    done.set_result(self._snapshot())
                except Exception as e:
                    done.set_exception(e)

        try:
            self._loop.call_soon_threadsafe(take)
            return done.result(SNAPSHOT_TIMEOUT)
        except concurrent.futures.TimeoutError:
            done.cancel()
            log.warning("metrics of %s: no snapshot in %.0f s", self._node, SNAPSHOT_TIMEOUT)
        except Exception as e:  # the loop closed, or the snapshot failed
            log.warning("metrics of %s: no snapshot (%s)", self._node, e)
        return None

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self._take()
        if snap is not None:
            self._node = str(snap.stats.node)
        node = self._node

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"cloudy_{name}", doc, labels=["node"])
            family.add_metric([node], value)
            return family

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"cloudy_{name}", doc, labels=["node"])
            family.add_metric([node], value)
            return family

        yield gauge("up", "1 if the node answered this scrape in time", int(snap is not None))
        if snap is None:
            return
        s = snap.stats
        yield gauge("uptime_seconds", "Seconds since the node started", s.uptime)
        yield gauge("processes", "Live processes", s.processes)
        yield gauge("registered_names", "Registered names", s.registered_names)
        yield gauge("monitors", "Monitors held by the node's processes", s.monitors)
        yield gauge("links", "Links held by the node's processes", s.links)
        yield counter("messages_in", "Items received from peers", s.messages_in)
        yield counter("messages_out", "Items sent to peers", s.messages_out)
        yield counter("bytes_in", "Bytes read from peers' connections", s.bytes_in)
        yield counter("bytes_out", "Bytes written to peers' connections", s.bytes_out)
        yield from self._peers(s)
        yield counter("connection_losses", "Peers lost", s.connection_losses)
        yield counter(
            "heartbeats_missed", "Times a peer was silent past a heartbeat", s.heartbeats_missed
        )
        refused = CounterMetricFamily(
            "cloudy_frames_refused", "Frames or connections refused", labels=["node", "reason"]
        )
        for reason, n in sorted(s.frames_refused.items()):
            refused.add_metric([node, reason], n)
        yield refused
        lengths = GaugeMetricFamily(
            "cloudy_mailbox_length", "Mailbox of a registered process", labels=["node", "name"]
        )
        longest = sorted(snap.mailboxes.items(), key=lambda kv: (-kv[1], kv[0]))
        for name, n in longest[:MAX_MAILBOX_SERIES]:
            lengths.add_metric([node, name], n)
        yield lengths
        yield gauge("mailbox_messages", "Messages in all mailboxes", snap.mailbox_messages)
        yield gauge("mailbox_longest", "The longest mailbox", snap.mailbox_longest)

    def _peers(self, s: NodeStats) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        sums: dict[str, list[float]] = {}
        handshakes = 0
        for p in s.peers:
            if p.state == "handshake":  # not yet proven: no series of its own (anyone
                handshakes += 1  # could make one per source port)
            elif p.state != "closed":
                row = sums.setdefault(str(p.node), [0, 0, 0, 0, p.silent_for])
                row[0] += p.messages_in
                row[1] += p.messages_out
                row[2] += p.bytes_in
                row[3] += p.bytes_out
                row[4] = min(row[4], p.silent_for)
        names = ("messages_in", "messages_out", "bytes_in", "bytes_out")
        docs = ("Items received from", "Items sent to", "Bytes read from", "Bytes written to")
        for i, (name, doc) in enumerate(zip(names, docs, strict=True)):
            family = CounterMetricFamily(
                f"cloudy_peer_{name}", f"{doc} a peer", labels=["node", "peer"]
            )
            for peer, row in sorted(sums.items()):
                family.add_metric([self._node, peer], row[i])
            yield family
        silent = GaugeMetricFamily(
            "cloudy_peer_silent_seconds",
            "Seconds since a peer sent a byte",
            labels=["node", "peer"],
        )
        for peer, row in sorted(sums.items()):
            silent.add_metric([self._node, peer], row[4])
        yield silent
        pending = GaugeMetricFamily(
            "cloudy_handshakes", "Connections still in their handshake", labels=["node"]
        )
        pending.add_metric([self._node], handshakes)
        yield pending


class MetricsServer:
    """prometheus-client's HTTP server for one node, in a daemon thread."""

    def __init__(self, host: str, port: int, snapshot: Callable[[], NodeSnapshot]) -> None:
        """Listen on *host*:*port* (0: any free port, then see `port`); on the running loop.

        Raises `MetricsUnavailable` without prometheus-client, `OSError` when the
        address cannot be bound.
        """
        require_prometheus()
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        collector = _Collector(snapshot, asyncio.get_running_loop())
        registry.register(cast(Any, collector))  # a Collector by its methods
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as e:  # said in one line, as for the node's own port
            raise listen_error(host, port, e, "metrics") from None
        self.port: int = self._server.server_port

    async def close(self) -> None:
        """Stop serving (waits for the server's thread, off the loop)."""
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()
