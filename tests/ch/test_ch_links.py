"""Cloud Haskell's tests of monitoring and linking, and its "flaky" group (``CH``).

Each is mirrored where no other cloudy test checks the same thing, and named after the
Cloud Haskell test it mirrors; the deliberate differences (docs/runtime.md) are not
repeated here. Where Cloud Haskell runs two nodes, the second is a node in its own OS
process (`peer`, shared by the module: ``conftest.py``); where it breaks a connection
(``testBreakConnection``), `cut` resets the TCP connections between the two nodes
(``ss -K``), and both ends see the loss.
"""

from __future__ import annotations

import asyncio
from types import NoneType
from typing import Any

import ch_funcs as ch
from ch_support import COOKIE, WAIT, break_connection, cut, down, run

from cloudy import (
    DiedDisconnect,
    DiedException,
    DiedNormal,
    DiedUnknownId,
    NodeId,
    NodeMonitorNotification,
    ProcessId,
    ProcessLinkException,
    ProcessMonitorNotification,
    ReceivePort,
    RegisterReply,
    closure,
    expect,
    expect_timeout,
    get_self_node,
    get_self_pid,
    kill,
    link,
    merge_ports_biased,
    merge_ports_rr,
    monitor,
    monitor_node,
    new_chan,
    receive_chan,
    reconnect,
    register_remote_async,
    send,
    send_chan,
    spawn,
    spawn_local,
    spawn_monitor_remote,
    unlink,
    unmonitor,
    unregister_remote_async,
    whereis_remote,
)
from cloudy.testing import NodeProcess, free_port

# ==================================================================================
# CH: monitoring and linking
# ==================================================================================


async def test_link_unreachable() -> None:
    """LinkUnreachable: a link to a process of a node that cannot be reached fires
    with DiedDisconnect."""
    nowhere = NodeId("127.0.0.1", free_port())
    target = ProcessId(nowhere, 1)

    async def main() -> tuple[Any, ...]:
        link(target)
        try:
            await expect_timeout(WAIT, bytes)
        except ProcessLinkException as e:
            return e.pid == target, e.reason
        return False, "no link exception"

    assert await run(main, connect_timeout=2.0) == (True, DiedDisconnect())


async def test_link_remote_dead_process(peer: NodeProcess) -> None:
    """LinkRemoteDeadProcess: a link to a process of another node that has ended fires
    with DiedUnknownId."""

    async def main() -> tuple[Any, ...]:
        pid, ref = await spawn_monitor_remote(peer.node_id, closure(ch.quick))
        await down(ref)
        link(pid)
        try:
            await expect_timeout(WAIT, bytes)
        except ProcessLinkException as e:
            return e.pid == pid, e.reason
        return False, "no link exception"

    assert await run(main) == (True, DiedUnknownId())


async def test_link_disconnect(peer: NodeProcess) -> None:
    """LinkDisconnect: a link to a process of another node fires with DiedDisconnect
    when the connection breaks."""

    async def main() -> tuple[Any, ...]:
        pid = await spawn(peer.node_id, closure(ch.waiter))
        link(pid)
        await whereis_remote(peer.node_id, "nobody")  # the link is in place there
        cut(get_self_node(), peer.node_id)
        try:
            await expect_timeout(WAIT, bytes)
        except ProcessLinkException as e:
            kill(pid, "done")
            return e.pid == pid, e.reason
        return False, "no link exception"

    assert await run(main) == (True, DiedDisconnect())


async def _undone(peer: NodeProcess, how: str, end: str) -> tuple[Any, ...]:
    """Unmonitor*/Unlink*: monitor (or link), undo it, and let the process end (or the
    connection break): only a second, control monitor hears of it."""

    async def main() -> tuple[Any, ...]:
        pid = await spawn(peer.node_id, closure(ch.waiter))
        if how == "monitor":
            unmonitor(monitor(pid))
        else:
            link(pid)
            unlink(pid)
        control = monitor(pid)
        if end == "disconnect":
            await whereis_remote(peer.node_id, "nobody")  # both are in place there
            await break_connection(peer.node_id)
        else:
            send(pid, "stop" if end == "normal" else "crash")
        note = await down(control)
        extra = await expect_timeout(0.2, ProcessMonitorNotification)  # a link would raise
        if end == "disconnect":
            kill(pid, "done")
        return note.reason, extra

    result: tuple[Any, ...] = await run(main)
    return result


async def test_unmonitor_normal_termination(peer: NodeProcess) -> None:
    """UnmonitorNormalTermination."""
    assert await _undone(peer, "monitor", "normal") == (DiedNormal(), None)


async def test_unmonitor_abnormal_termination(peer: NodeProcess) -> None:
    """UnmonitorAbnormalTermination."""
    reason, extra = await _undone(peer, "monitor", "abnormal")
    assert reason == DiedException("RuntimeError: asked to crash") and extra is None


async def test_unmonitor_disconnect(peer: NodeProcess) -> None:
    """UnmonitorDisconnect."""
    assert await _undone(peer, "monitor", "disconnect") == (DiedDisconnect(), None)


async def test_unlink_normal_termination(peer: NodeProcess) -> None:
    """UnlinkNormalTermination."""
    assert await _undone(peer, "link", "normal") == (DiedNormal(), None)


async def test_unlink_abnormal_termination(peer: NodeProcess) -> None:
    """UnlinkAbnormalTermination."""
    reason, extra = await _undone(peer, "link", "abnormal")
    assert reason == DiedException("RuntimeError: asked to crash") and extra is None


async def test_unlink_disconnect(peer: NodeProcess) -> None:
    """UnlinkDisconnect."""
    assert await _undone(peer, "link", "disconnect") == (DiedDisconnect(), None)


async def test_monitor_live_node() -> None:
    """MonitorLiveNode: a node monitor fires when the node, alive when monitored, is
    closed (here: its OS process ends on SIGTERM, closing its node)."""
    with NodeProcess("ch_funcs", cookie=COOKIE) as live:

        async def main() -> tuple[Any, ...]:
            ref = monitor_node(live.node_id)
            await whereis_remote(live.node_id, "nobody")  # connected
            await asyncio.to_thread(live.stop)
            note = await expect_timeout(WAIT, NodeMonitorNotification)
            assert note is not None, "no NodeMonitorNotification"
            return note.ref == ref, note.node == live.node_id

        assert await run(main) == (True, True)


# ==================================================================================
# CH: the "flaky" group (run here)
# ==================================================================================


async def test_reconnect(peer: NodeProcess) -> None:
    """Reconnect: after a lost connection send drops until reconnect; node controller
    requests (register_remote_async, whereis_remote) reconnect by themselves; a name
    held there by a process of ours is freed when the connection is lost."""

    async def main() -> tuple[Any, ...]:
        node, me = peer.node_id, get_self_pid()
        them = await spawn(node, closure(ch.two_strings, me))
        send(them, "message 1")
        await asyncio.sleep(0.1)
        await break_connection(node)
        send(them, "message 2")  # dropped: the connection it would follow was lost
        reconnect(them)
        send(them, "message 3")
        strings = await expect_timeout(WAIT, list)

        register_remote_async(node, "ch-a", me)
        first = await expect(RegisterReply)
        await break_connection(node)
        replies = [first]
        for name in ("ch-b", "ch-c"):
            register_remote_async(node, name, me)
            replies.append(await expect(RegisterReply))
        for _ in range(100):  # "ch-a" is freed once the peer has seen the loss too
            if await whereis_remote(node, "ch-a") is None:
                break
            await asyncio.sleep(0.05)
        names = [await whereis_remote(node, n) for n in ("ch-a", "ch-b", "ch-c")]
        for name in ("ch-b", "ch-c"):
            unregister_remote_async(node, name)
            await expect(RegisterReply)
        return strings, [r.ok for r in replies], names, me

    strings, oks, names, me = await run(main)
    assert strings == ["message 1", "message 3"]
    assert oks == [True, True, True]
    assert names == [None, me, me]


async def test_merge_channels() -> None:
    """MergeChannels: biased and round-robin merges, flat and nested, take in the
    expected order; with nothing waiting, in arrival order whatever the merge."""

    def char_channel(c: str) -> ReceivePort[str]:
        sp, rp = new_chan(str)
        for _ in range(3):
            send_chan(sp, c)
        return rp

    def merge(biased: bool, ports: list[ReceivePort[str]]) -> ReceivePort[str]:
        return merge_ports_biased(ports) if biased else merge_ports_rr(ports)

    async def take(port: ReceivePort[str], n: int) -> str:
        return "".join([await receive_chan(port) for _ in range(n)])

    async def sender(port_box: ReceivePort[Any]) -> None:
        sa, sb, sc = [await receive_chan(port_box) for _ in range(3)]
        by_name = {"a": sa, "b": sb, "c": sc}
        for c in "abcacbbacbcacabcba":
            send_chan(by_name[c], c)
            await expect(NoneType)  # taken: the next one finds nothing waiting

    async def blocked(biased: bool) -> str:
        box_sp, box_rp = new_chan()
        sender_pid = spawn_local(sender, box_rp)
        ports = []
        for _ in range(3):
            sp, rp = new_chan(str)
            send_chan(box_sp, sp)
            ports.append(rp)
        merged, got = merge(biased, ports), ""
        for _ in range(18):
            got += await receive_chan(merged)
            send(sender_pid, None)
        return got

    async def main() -> list[str]:
        got = [await take(merge(b, [char_channel(c) for c in "abc"]), 9) for b in (True, False)]
        for inner, outer in ((True, True), (True, False), (False, True), (False, False)):
            inners = [merge(inner, [char_channel(c) for c in cs]) for cs in ("abc", "def", "ghi")]
            got.append(await take(merge(outer, inners), 27))
        got += [await blocked(True), await blocked(False)]
        return got

    assert await run(main) == [
        "aaabbbccc",
        "abcabcabc",
        "aaabbbcccdddeeefffggghhhiii",
        "adgadgadgbehbehbehcficficfi",
        "abcabcabcdefdefdefghighighi",
        "adgbehcfiadgbehcfiadgbehcfi",
        "abcacbbacbcacabcba",
        "abcacbbacbcacabcba",
    ]
