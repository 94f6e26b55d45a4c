"""Load and faults with every node in its own OS process: nothing lost without a word.

Bounded in count and time (each test well under 30 s). The receiver's and the
senders' peak memory is read from /proc (VmHWM) of their processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from typing import Any

import load_funcs as lf
import pytest

from cloudy import (
    LocalNode,
    ProcessId,
    ProcessInfo,
    call,
    closure,
    expect,
    get_self_pid,
    send,
    spawn,
)
from cloudy.testing import NodeProcess

pytestmark = pytest.mark.load

COOKIE = "overload-tests"


def peak_rss_mb(node: NodeProcess) -> float:
    with open(f"/proc/{node.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def stats(sink: ProcessId) -> lf.Stats:
    send(sink, lf.Query(get_self_pid()))
    return await expect(lf.Stats)


async def settle(sink: ProcessId, senders: int, within: float = 30.0) -> lf.Stats:
    """The sink's stats once every sender's `Done` arrived with all it announced."""
    deadline = time.monotonic() + within
    while True:
        got = await stats(sink)
        complete = len(got.done) == senders and all(
            got.received.get(k, 0) == n for k, n in got.done.items()
        )
        if complete or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.2)


async def run(main: Any) -> Any:
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE) as node:
        return await asyncio.wait_for(node.run_process(main), 60)


async def test_eight_senders_flat_out_lose_nothing_and_keep_order() -> None:
    with contextlib.ExitStack() as stack:
        receiver = stack.enter_context(NodeProcess("load_funcs", cookie=COOKIE))
        senders = [stack.enter_context(NodeProcess("load_funcs", cookie=COOKIE)) for _ in range(8)]

        async def main() -> lf.Stats:
            sink = await spawn(receiver.node_id, closure(lf.sink))
            floods = [
                call(s.node_id, closure(lf.flood, sink, k, 3.0, "send"))
                for k, s in enumerate(senders)
            ]
            sent = await asyncio.gather(*floods)
            got = await settle(sink, len(senders))
            assert got.done == dict(enumerate(sent))
            return got

        got = await run(main)
        assert got.holes == {}, "a hole followed by later messages"
        assert got.received == got.done, "messages lost"
        assert sum(got.received.values()) > 100_000  # they did send flat out
        for node in (receiver, *senders):
            assert "declaring it lost" not in node.log(), node.log()
        assert peak_rss_mb(receiver) < 200, "the receiver's memory is not bounded"
        assert max(peak_rss_mb(s) for s in senders) < 120


async def test_a_frozen_receiver_loses_nothing_and_the_sender_stays_small() -> None:
    with (
        NodeProcess("load_funcs", cookie=COOKIE) as receiver,
        NodeProcess("load_funcs", cookie=COOKIE) as sender,
    ):

        async def main() -> tuple[int, lf.Stats]:
            sink = await spawn(receiver.node_id, closure(lf.sink))
            flooding = asyncio.ensure_future(
                call(sender.node_id, closure(lf.flood, sink, 0, 6.0, "send"))
            )
            await asyncio.sleep(1.0)
            receiver.signal(signal.SIGSTOP)  # below the 5 s heartbeat timeout
            try:
                await asyncio.sleep(3.0)
            finally:
                receiver.signal(signal.SIGCONT)
            sent: int = await flooding
            return sent, await settle(sink, 1)

        sent, got = await run(main)
        assert got.received == {0: sent} and got.holes == {}
        assert "declaring it lost" not in sender.log() + receiver.log()
        # the sender waited while the receiver was frozen, with ~1 MiB buffered
        assert peak_rss_mb(sender) < 80


def reset_connections(port: int) -> None:
    """Kill every TCP connection to *port* on 127.0.0.1 (both ends get a reset)."""
    for args in (["dport", "=", str(port)], ["sport", "=", str(port)]):
        subprocess.run(["ss", "-K", "dst", "127.0.0.1", *args], capture_output=True, check=False)


@pytest.mark.parametrize("how", ["send", "usend", "reconnect"])
async def test_a_connection_reset_mid_stream(how: str) -> None:
    tcp = {**os.environ, "CLOUDY_LOCAL_SOCKETS": "0"}  # `reset_connections` resets TCP
    with (
        NodeProcess("load_funcs", cookie=COOKIE, env=tcp) as receiver,
        NodeProcess("load_funcs", cookie=COOKIE, env=tcp) as sender,
    ):

        async def flood_and_reset() -> ProcessId:
            sink = await spawn(receiver.node_id, closure(lf.sink))
            flooding = asyncio.ensure_future(
                call(sender.node_id, closure(lf.flood, sink, 0, 3.0, how))
            )
            await asyncio.sleep(1.0)
            assert (await stats(sink)).received.get(0, 0) > 0
            reset_connections(receiver.port)
            await flooding
            await asyncio.sleep(1.0)  # let what was sent after the reset arrive
            return sink

        async with LocalNode("127.0.0.1", 0, cookie=COOKIE, local_sockets=False) as node:
            sink = await asyncio.wait_for(node.run_process(flood_and_reset), 60)
            # our own connection to the receiver was reset too, so the sink would
            # not answer the process above: a process it never sent to asks
            got: lf.Stats = await asyncio.wait_for(node.run_process(stats, sink), 10)
        received, last = got.received.get(0, 0), got.last.get(0, -1)
        if how == "send":
            # a prefix: everything up to some point, nothing after
            assert got.holes == {} and received == last + 1
            assert "are dropped since the connection to its node was lost" in sender.log()
        else:
            # delivery went on after the reset: a hole, then later messages
            assert 0 in got.holes, got
            assert last > got.holes[0][0]
            assert 0 in got.done  # the final Done arrived


async def test_a_process_that_does_not_read_slows_its_remote_sender_losing_nothing() -> None:
    with (
        NodeProcess("load_funcs", cookie=COOKIE) as receiver,
        NodeProcess("load_funcs", cookie=COOKIE) as sender,
    ):

        async def main() -> tuple[ProcessInfo | None, int, lf.Stats]:
            sink = await spawn(receiver.node_id, closure(lf.lazy_sink))
            flooding = asyncio.ensure_future(
                call(sender.node_id, closure(lf.flood, sink, 0, 3.0, "send"))
            )
            await asyncio.sleep(2.5)
            info: ProcessInfo | None = await call(receiver.node_id, closure(lf.info, sink))
            send(sink, lf.Go())
            sent: int = await flooding
            return info, sent, await settle(sink, 1)

        info, sent, got = await run(main)
        assert info is not None
        # the mailbox passed the pause threshold (100k) by at most what was in flight
        assert 100_000 <= info.mailbox_length < 400_000, info
        receiver.wait_for_log("messages waiting in its mailbox")
        assert got.received == {0: sent} and got.holes == {}
        assert sent > info.mailbox_length  # the sender went on once the sink read
        assert peak_rss_mb(receiver) < 250
