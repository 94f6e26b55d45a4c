"""A node's counters for Prometheus: ``LocalNode(services=[Metrics(...)])`` and ``cloudy slave
--metrics-port``, scraped over HTTP and read with prometheus-client's own parser; and
the one line a user gets without prometheus-client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
import remote_funcs as rf
from prometheus_client.parser import text_string_to_metric_families

from cloudy import (
    ConnectionRefusedByPeer,
    LocalNode,
    NodeMonitorNotification,
    ProcessId,
    call,
    closure,
    expect,
    get_node_stats,
    get_self_pid,
    monitor_node,
    register,
    send,
    spawn_local,
    whereis_remote,
)
from cloudy.observe.metrics import Metrics, MetricsServer, Snapshot
from cloudy.testing import NodeProcess, free_port

COOKIE = "test-metrics"
N = 200
CLOUDY = [sys.executable, "-m", "cloudy"]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def peer() -> Iterator[NodeProcess]:
    with NodeProcess("remote_funcs", cookie=COOKIE) as node:
        yield node


def scrape(port: int) -> tuple[set[str], Samples]:
    """The families served on *port* and every sample, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    families = list(text_string_to_metric_families(text))
    samples = {(s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples}
    return {f.name for f in families}, samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    """The one sample of *metric* whose labels include *labels*."""
    (found,) = [v for (n, ls), v in samples.items() if n == metric and set(labels.items()) <= ls]
    return found


async def idle() -> None:
    await expect(ProcessId)  # never sent one: its mailbox only fills


async def test_the_endpoint_serves_the_nodes_counters(peer: NodeProcess) -> None:
    metrics = Metrics(0)
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE, services=[metrics]) as node:
        assert metrics.port != 0
        port = metrics.port
        me = str(node.node_id)

        async def exchange() -> None:
            echo = await whereis_remote(peer.node_id, "echo")
            assert echo is not None
            inbox = spawn_local(idle)
            register("inbox", inbox)
            for i in range(5):
                send(inbox, i)  # five messages nobody takes
            for i in range(N):
                send(echo, rf.Echo(get_self_pid(), i))
            for _ in range(N):
                await expect(int)

        await asyncio.wait_for(node.run_process(exchange), 30)
        with pytest.raises(ConnectionRefusedByPeer):  # a peer with another cookie
            async with LocalNode("127.0.0.1", 0, cookie="not-the-cookie") as stranger:
                await stranger.run_process(lambda: call(node.node_id, closure(rf.add, 1, 2)))
        stats = await asyncio.wait_for(node.run_process(get_node_stats, node.node_id), 10)
        families, samples = await asyncio.to_thread(scrape, port)

        expected = {"up", "uptime_seconds", "processes", "registered_names", "monitors"}
        expected |= {"links", "messages_in", "messages_out", "bytes_in", "bytes_out"}
        expected |= {"peer_messages_in", "peer_messages_out", "peer_bytes_in", "peer_bytes_out"}
        expected |= {"peer_silent_seconds", "connection_losses", "heartbeats_missed"}
        expected |= {"frames_refused", "mailbox_length", "mailbox_messages", "mailbox_longest"}
        expected |= {"handshakes"}
        assert families == {f"cloudy_{name}" for name in expected}
        assert value(samples, "cloudy_up", node=me) == 1
        assert value(samples, "cloudy_processes", node=me) == 2  # the logger and "inbox"
        assert value(samples, "cloudy_messages_out_total") == stats.messages_out >= N
        assert value(samples, "cloudy_messages_in_total") == stats.messages_in >= N
        there = str(peer.node_id)
        assert value(samples, "cloudy_peer_messages_out_total", peer=there) == stats.messages_out
        assert value(samples, "cloudy_peer_bytes_out_total", peer=there) >= 30 * N
        assert value(samples, "cloudy_frames_refused_total", reason="bad cookie") == 1
        assert value(samples, "cloudy_mailbox_length", name="inbox") == 5
        assert value(samples, "cloudy_mailbox_length", name="logger") == 0
        assert value(samples, "cloudy_mailbox_longest") == 5
        assert value(samples, "cloudy_connection_losses_total") == 0

        async def lose_peer() -> None:
            monitor_node(peer.node_id)
            peer.signal(signal.SIGKILL)
            await expect(NodeMonitorNotification)

        await asyncio.wait_for(node.run_process(lose_peer), 30)
        _, samples = await asyncio.to_thread(scrape, port)
        assert value(samples, "cloudy_connection_losses_total") == 1
        assert not [n for (n, _), _ in samples.items() if n.startswith("cloudy_peer_")]
        assert value(samples, "cloudy_messages_out_total") >= stats.messages_out  # kept

        # connections that never prove the cookie get no series of their own (anyone
        # could open one per source port): they are counted
        here = (node.node_id.host, node.node_id.port)
        raw = [await asyncio.open_connection(*here) for _ in range(3)]
        try:
            for _ in range(100):
                _, samples = await asyncio.to_thread(scrape, port)
                if value(samples, "cloudy_handshakes") == 3:
                    break
                await asyncio.sleep(0.05)
            assert value(samples, "cloudy_handshakes") == 3
            assert not [n for (n, _), _ in samples.items() if n.startswith("cloudy_peer_")]
        finally:
            for _, writer in raw:
                writer.close()


def test_cloudy_slave_serves_metrics_on_the_port_given() -> None:
    node_port, metrics_port = free_port(), free_port()
    discovery = str(free_port(socket.SOCK_DGRAM))
    env = dict(os.environ, CLOUDY_COOKIE=f"{COOKIE}-{discovery}")
    command = [*CLOUDY, "slave", "127.0.0.1", str(node_port), "--discovery-port", discovery]
    slave = subprocess.Popen(
        [*command, "--metrics-port", str(metrics_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                _, samples = scrape(metrics_port)
                break
            except OSError:
                assert slave.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        me = f"nid://127.0.0.1:{node_port}:0"
        assert value(samples, "cloudy_up", node=me) == 1
        assert value(samples, "cloudy_processes", node=me) >= 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(slave.pid, signal.SIGKILL)
        slave.wait()


BLOCKED = "import sys; sys.modules['prometheus_client'] = None; "


def test_without_prometheus_client_a_metrics_port_says_what_to_install() -> None:
    library = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKED + "from cloudy.observe.metrics import Metrics\n"
            "try:\n    Metrics(0)\n"
            "except ImportError as e:\n    print(type(e).__name__, e)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert library.stdout == (
        "MetricsUnavailable metrics need prometheus-client: pip install 'cloudy[metrics]'\n"
    )
    port = str(free_port())
    command = f"from cloudy.cli import main; sys.exit(main(['slave', '127.0.0.1', '{port}', "
    command += "'--metrics-port', '0']))"
    cli = subprocess.run(
        [sys.executable, "-c", BLOCKED + command], capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 1
    assert cli.stderr == "cloudy: metrics need prometheus-client: pip install 'cloudy[metrics]'\n"


async def test_a_metrics_port_in_use_fails_the_start_and_leaves_nothing_listening() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = LocalNode("127.0.0.1", 0, cookie=COOKIE, services=[Metrics(port)])
        with pytest.raises(OSError) as raised:
            await node.start()
        # one line that says which port, for what, and what to do
        assert str(raised.value).startswith(f"cannot listen for metrics on 127.0.0.1:{port}: ")
        assert f"port {port} is in use" in str(raised.value)
        with pytest.raises(ConnectionRefusedError), socket.socket() as s:
            s.connect(("127.0.0.1", node.node_id.port))  # its node port is closed again


async def test_a_node_that_cannot_answer_a_scrape_is_scraped_as_down() -> None:
    def broken() -> Snapshot:
        raise RuntimeError("no snapshot today")

    server = MetricsServer("127.0.0.1", 0, broken)
    try:
        families, samples = await asyncio.to_thread(scrape, server.port)
    finally:
        await server.close()
    assert families == {"cloudy_up"}
    assert value(samples, "cloudy_up") == 0
