"""What a node counts of its traffic and its processes, seen through the public API
(`get_node_stats`, `get_process_info_remote`, `get_process_infos`), with the peer in its
own OS process: messages and bytes both ways, the peer's connection and heartbeat, a
lost peer, refused frames, and what each process has received, sent and waits in."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import remote_funcs as rf

from cloudy import (
    LocalNode,
    NodeId,
    NodeMonitorNotification,
    NodeStats,
    PeerStats,
    ProcessId,
    call,
    closure,
    drain,
    expect,
    get_node_stats,
    get_process_info,
    get_process_info_remote,
    get_process_infos,
    get_self_pid,
    kill,
    monitor_node,
    new_chan,
    nsend,
    receive_chan,
    register,
    send,
    send_chan,
    send_many,
    spawn_local,
    usend,
    whereis_remote,
)
from cloudy.errors import ConnectionRefusedByPeer
from cloudy.testing import NodeProcess

COOKIE = "test-traffic"
N = 300


# Both ends tick as often: a peer is late after two of *our* tick periods.
HEARTBEAT = 2.0


@pytest.fixture
def peer() -> Iterator[NodeProcess]:
    with NodeProcess("remote_funcs", cookie=COOKIE, heartbeat_timeout=HEARTBEAT) as node:
        yield node


async def run(main: Callable[..., Any], *args: Any, **options: Any) -> Any:
    options.setdefault("cookie", COOKIE)
    async with LocalNode("127.0.0.1", 0, **options) as node:
        return await asyncio.wait_for(node.run_process(main, *args), 30)


def peer_of(stats: NodeStats, node: NodeId) -> PeerStats:
    (found,) = [p for p in stats.peers if p.node == node]
    return found


async def echo_n(echo: ProcessId, n: int) -> None:
    """Send *n* payloads through the peer's echo process and take the *n* back."""
    me = get_self_pid()
    for i in range(n):
        send(echo, rf.Echo(me, i))
    for _ in range(n):
        await expect(int)


async def test_both_nodes_count_the_messages_and_bytes_they_exchange(peer: NodeProcess) -> None:
    async def main() -> tuple[NodeStats, NodeStats, NodeStats]:
        echo = await whereis_remote(peer.node_id, "echo")
        assert echo is not None
        await echo_n(echo, N)
        before = await get_node_stats(get_self_pid().node)
        there = await get_node_stats(peer.node_id)  # one call: a request and its reply
        after = await get_node_stats(get_self_pid().node)
        return before, there, after

    before, there, after = await run(main)
    # each side sent N messages and received N, plus a few of the nodes' own signals
    assert before.messages_out >= N + 1 and before.messages_in >= N + 1
    assert there.messages_in >= N + 1 and there.messages_out >= N
    # the peer read everything we had written before our request, and never more than
    # we wrote; bytes too (ticks included), and a message is some bytes
    assert before.messages_out < there.messages_in <= after.messages_out
    assert before.bytes_out < there.bytes_in <= after.bytes_out
    assert there.bytes_out <= after.bytes_in
    assert before.bytes_out > 30 * N and there.bytes_out > 3 * N  # Echoes; small ints back
    seen_there = peer_of(after, peer.node_id)
    assert seen_there.state == "up" and seen_there.heartbeat == "ok"
    assert seen_there.messages_out == after.messages_out  # our only peer
    assert seen_there.bytes_in == after.bytes_in
    seen_here = peer_of(there, before.node)
    assert seen_here.state == "up" and seen_here.messages_in == there.messages_in
    assert there.uptime > 0 and there.connection_losses == 0 and there.frames_refused == {}


async def test_a_peer_killed_with_sigkill_is_one_loss_and_shows_as_lost(
    peer: NodeProcess,
) -> None:
    async def main() -> tuple[NodeStats, NodeStats]:
        echo = await whereis_remote(peer.node_id, "echo")
        assert echo is not None
        await echo_n(echo, 10)
        up = await get_node_stats(get_self_pid().node)
        monitor_node(peer.node_id)
        peer.signal(signal.SIGKILL)
        await expect(NodeMonitorNotification)
        return up, await get_node_stats(get_self_pid().node)

    up, down = await run(main)
    assert (up.connection_losses, peer_of(up, peer.node_id).state) == (0, "up")
    assert down.connection_losses == 1
    lost = peer_of(down, peer.node_id)
    assert (lost.state, lost.heartbeat) == ("closed", "lost")
    assert lost.messages_out >= 10  # what went to it is still counted
    assert down.messages_out >= up.messages_out  # the totals keep a closed connection's


async def test_a_stopped_peer_is_late_then_lost_and_its_missed_heartbeat_counted(
    peer: NodeProcess,
) -> None:
    async def main() -> tuple[list[str], NodeStats]:
        echo = await whereis_remote(peer.node_id, "echo")
        assert echo is not None
        await echo_n(echo, 1)
        monitor_node(peer.node_id)
        peer.signal(signal.SIGSTOP)
        seen = []  # the peer's heartbeat as we see it, every 50 ms, until it is lost
        while True:
            stats = await get_node_stats(get_self_pid().node)
            seen.append(peer_of(stats, peer.node_id).heartbeat)
            if stats.connection_losses:
                break
            await asyncio.sleep(0.05)
        await expect(NodeMonitorNotification)
        return seen, stats

    try:
        seen, stats = await run(main, heartbeat_timeout=HEARTBEAT)
    finally:
        peer.signal(signal.SIGCONT)
    assert seen[0] == "ok" and "late" in seen and seen[-1] == "lost"
    assert stats.heartbeats_missed >= 1 and stats.connection_losses == 1


async def test_a_bad_cookie_and_an_oversized_frame_are_counted_as_refused(
    peer: NodeProcess,
) -> None:
    with pytest.raises(ConnectionRefusedByPeer):
        await run(lambda: call(peer.node_id, closure(rf.add, 1, 2)), cookie="not-the-cookie")
    with socket.create_connection(("127.0.0.1", peer.port), timeout=5) as s:
        s.sendall((1 << 30).to_bytes(4, "big"))  # a frame of 1 GiB, before any handshake
        s.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            while s.recv(65536):  # until the peer closes it
                pass

    async def main() -> NodeStats:
        return await get_node_stats(peer.node_id)

    stats = await run(main)
    assert stats.frames_refused == {"bad cookie": 1, "frame too large": 1}


async def test_process_info_counts_messages_in_and_out_and_says_it_waits_in_receive(
    peer: NodeProcess,
) -> None:
    async def main() -> tuple[Any, ...]:
        echo = await whereis_remote(peer.node_id, "echo")
        assert echo is not None
        # asking starts the counting on either node (other tests may have asked the peer)
        before = await get_process_info_remote(echo)
        assert get_process_info(get_self_pid()) is not None
        await echo_n(echo, N)
        info = await get_process_info_remote(echo)
        listed = await get_process_infos(peer.node_id)
        return echo, before, info, listed, get_process_info(get_self_pid())

    echo, before, info, listed, mine = await run(main)
    assert before is not None and info is not None and info.names == ["echo"]
    got = (info.messages_in - before.messages_in, info.messages_out - before.messages_out)
    assert (*got, info.waiting) == (N, N, "receive")
    assert [s.info for s in listed if s.pid == echo] == [info]
    assert [s.pid.lid for s in listed] == sorted(s.pid.lid for s in listed)  # oldest first
    assert all(s.pid.node == peer.node_id for s in listed)
    # ours, counted from our first question: N sent, N echoed back
    assert (mine.messages_out, mine.messages_in, mine.waiting) == (N, N, "running")


async def test_every_way_of_sending_counts_for_the_sender_and_the_mailbox_it_fills() -> None:
    async def main() -> tuple[int, int, int, int]:
        inbox = spawn_local(expect, ProcessId)  # never sent one: it only collects
        register("inbox", inbox)
        port, _ = new_chan()
        send(inbox, "unwatched")  # nobody asked yet: not counted (the fast path)
        watched = get_process_info(inbox)  # counting starts now, from zero
        assert watched is not None and watched.messages_in == 0
        for i in range(3):
            send(inbox, i)
        send_many([inbox, inbox], "both")
        nsend("inbox", "by name")
        usend(inbox, "unordered")
        send_chan(port, "on a channel")  # sent, but to a channel, not a mailbox
        me, there = get_process_info(get_self_pid()), get_process_info(inbox)
        assert me is not None and there is not None
        return me.messages_out, there.messages_in, there.mailbox_length, me.messages_in

    assert await run(main) == (3 + 2 + 1 + 1 + 1, 7, 1 + 7, 0)


async def test_what_each_process_waits_in() -> None:
    """On one node: each way of waiting, told apart."""

    async def sleeper() -> None:
        await asyncio.sleep(60)

    async def chan_reader() -> None:
        _, port = new_chan()
        await receive_chan(port)

    async def receiver() -> None:
        await expect(str)

    async def caller(node: NodeId) -> None:
        await call(node, closure(rf.slow_add, 1, 2, 60.0))

    async def main() -> dict[str, str]:
        me = get_self_pid()
        pids = {
            "sleep": spawn_local(sleeper),
            "receive_chan": spawn_local(chan_reader),
            "receive": spawn_local(receiver),
            "call": spawn_local(caller, me.node),
        }
        await asyncio.sleep(0.2)  # each is blocked by now
        waits = {name: _waiting(pid) for name, pid in pids.items()}
        send(pids["receive"], "go")  # a message: it is about to run
        waits["ready"] = _waiting(pids["receive"])
        waits["running"] = _waiting(me)
        return waits

    waits = await run(main)
    assert waits == {name: name for name in waits}


async def test_a_sender_to_a_frozen_peer_waits_in_drain_and_the_peer_is_busy(
    peer: NodeProcess,
) -> None:
    async def flood(to: ProcessId) -> None:
        blob = bytes(100_000)
        while True:
            send(to, blob)
            await drain()

    async def main() -> tuple[str, str]:
        echo = await whereis_remote(peer.node_id, "echo")
        assert echo is not None
        peer.signal(signal.SIGSTOP)  # it reads nothing more: its buffers fill, then ours
        sender = spawn_local(flood, echo)
        for _ in range(500):  # at most 10 s
            if (waiting := _waiting(sender)) == "drain":
                break
            await asyncio.sleep(0.02)
        stats = await get_node_stats(get_self_pid().node)
        kill(sender, "enough")
        return waiting, peer_of(stats, peer.node_id).state

    try:
        assert await run(main, send_high_water=256 * 1024) == ("drain", "busy")
    finally:
        peer.signal(signal.SIGCONT)


def _waiting(pid: ProcessId) -> str:
    info = get_process_info(pid)
    assert info is not None
    return info.waiting


async def test_stats_of_a_node_without_peers_count_nothing_but_time() -> None:
    async def main() -> NodeStats:
        await asyncio.sleep(0.05)
        return await get_node_stats(get_self_pid().node)

    started = time.monotonic()
    stats = await run(main)
    assert 0.05 <= stats.uptime <= time.monotonic() - started
    assert (stats.messages_in, stats.messages_out, stats.bytes_in, stats.bytes_out) == (0,) * 4
    assert (stats.peers, stats.connection_losses, stats.heartbeats_missed) == ([], 0, 0)
