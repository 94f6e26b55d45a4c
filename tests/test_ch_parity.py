"""Cloud Haskell's own tests (distributed-process-tests: CH, Receive, Tracing, Mx,
Closure), each mirrored where no other cloudy test checks the same thing.

Each test is named after the Cloud Haskell test it mirrors; those that other cloudy tests
already check, and the deliberate differences (docs/runtime.md), are not repeated here. Where Cloud
Haskell runs two nodes, the second is a node in its own OS process (`peer`, shared by
the module); where it breaks a connection (``testBreakConnection``), `cut` resets the
TCP connections between the two nodes (``ss -K``), and both ends see the loss.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Callable, Iterator
from types import NoneType
from typing import Any

import ch_funcs as ch
import pytest

from cloudy import (
    TRACE_KINDS,
    DiedDisconnect,
    DiedException,
    DiedNormal,
    DiedUnknownId,
    LocalNode,
    Match,
    NodeId,
    NodeMonitorNotification,
    ProcessExitException,
    ProcessId,
    ProcessLinkException,
    ProcessMonitorNotification,
    ProcessRegistrationException,
    ReceivePort,
    RegisterReply,
    SendPort,
    TraceEvent,
    call_local,
    catch_exit,
    closure,
    exit,
    expect,
    expect_timeout,
    get_self_node,
    get_self_pid,
    kill,
    link,
    match,
    match_chan,
    match_if,
    merge_ports_biased,
    merge_ports_rr,
    monitor,
    monitor_node,
    new_chan,
    nsend,
    nsend_remote,
    receive_chan,
    receive_chan_timeout,
    receive_timeout,
    receive_wait,
    reconnect,
    register,
    register_remote_async,
    reregister,
    send,
    send_chan,
    spawn,
    spawn_local,
    spawn_monitor,
    spawn_monitor_remote,
    start_tracer,
    stop_tracer,
    uforward,
    unlink,
    unmonitor,
    unmonitor_node,
    unregister,
    unregister_remote_async,
    usend,
    whereis,
    whereis_remote,
)
from cloudy import die as die_now
from cloudy.testing import NodeProcess, free_port

COOKIE = "ch-parity"
WAIT = 10.0  # what is due at once must come well within it


@pytest.fixture(scope="module")
def peer() -> Iterator[NodeProcess]:
    # over TCP, as between two machines: `cut` resets TCP connections
    env = {**os.environ, "CLOUDY_LOCAL_SOCKETS": "0"}
    with NodeProcess("ch_funcs", cookie=COOKIE, env=env) as node:
        yield node


async def run(main: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """Run *main* as a process on a fresh node (in this OS process); what it returns."""
    options.setdefault("cookie", COOKIE)
    options.setdefault("local_sockets", False)  # (see `peer`)
    async with LocalNode("127.0.0.1", 0, **options) as node:
        return await asyncio.wait_for(node.run_process(main, *args), 30)


def cut(*nodes: NodeId) -> None:
    """Cloud Haskell's ``testBreakConnection``: reset every TCP connection to or from
    the ports of *nodes* on 127.0.0.1 (both ends get a reset)."""
    ports = " or ".join(f"dport = :{n.port} or sport = :{n.port}" for n in nodes)
    subprocess.run(["ss", "-K", "dst", "127.0.0.1", f"( {ports} )"], capture_output=True)


async def break_connection(node: NodeId) -> None:
    """Cloud Haskell's ``syncBreakConnection``: cut this node's connections to *node*
    and return once this node has noticed (its node monitor fired)."""
    ref = monitor_node(node)
    for _ in range(100):  # until there is a connection to cut (it may be opening)
        cut(get_self_node(), node)
        lost = await receive_timeout(
            0.1, match_if(NodeMonitorNotification, lambda n: n.ref == ref, lambda n: n)
        )
        if lost is not None:
            return
    unmonitor_node(ref)
    raise AssertionError(f"the connection to {node} did not break (ss -K needs CAP_NET_ADMIN)")


async def down(ref: Any) -> ProcessMonitorNotification:
    """The notification of monitor *ref* (within WAIT)."""
    note = await receive_timeout(
        WAIT, match_if(ProcessMonitorNotification, lambda n: n.ref == ref, lambda n: n)
    )
    assert note is not None, "no ProcessMonitorNotification in time"
    return note


async def forward_events(port: SendPort) -> None:
    """A tracer that passes every `TraceEvent` on, on *port*."""
    while True:
        send_chan(port, await expect(TraceEvent))


async def next_events(rp: ReceivePort[TraceEvent], n: int) -> list[tuple[Any, ...]]:
    """The next *n* events on *rp*, as ``(kind, pid, detail)``."""
    got: list[tuple[Any, ...]] = []
    for _ in range(n):
        ev = await receive_chan_timeout(rp, WAIT)
        assert ev is not None, f"only {got} came"
        got.append((ev.kind, ev.pid, ev.detail))
    return got


# ==================================================================================
# CH: basic features
# ==================================================================================


async def test_ping(peer: NodeProcess) -> None:
    """Ping: 10,000 round trips to the paper's ping server on another node."""

    async def main() -> int:
        server = await spawn(peer.node_id, closure(ch.ping_server))
        me, answered = get_self_pid(), 0
        for _ in range(10_000):
            send(server, ch.Pong(me))
            ping = await expect_timeout(3.0, ch.Ping)
            assert ping is not None and ping.pid == server, "Failed to receive Ping"
            answered += 1
        kill(server, "done")
        return answered

    assert await run(main) == 10_000


async def test_math(peer: NodeProcess) -> None:
    """Math: the paper's math server on another node (receive_wait: match, match_if)."""

    async def main() -> tuple[Any, ...]:
        server = await spawn(peer.node_id, closure(ch.math_server))
        me = get_self_pid()
        send(server, ch.Add(me, 1.0, 2.0))
        three = await expect(float)
        send(server, ch.Divide(me, 8.0, 2.0))
        four = await expect(float)
        send(server, ch.Divide(me, 8.0, 0.0))
        by_zero = await expect(ch.DivByZero)
        kill(server, "done")
        return three, four, by_zero

    assert await run(main) == (3.0, 4.0, ch.DivByZero())


async def test_timeout0(peer: NodeProcess) -> None:
    """Timeout0: a server polling with timeout 0 finds its message behind 10,000 others."""

    async def main() -> Any:
        server = await spawn(peer.node_id, closure(ch.polling_ping_server))
        me = get_self_pid()
        for _ in range(10_000):
            send(server, "Irrelevant message")
        send(server, ch.Pong(me))
        ping = await expect_timeout(WAIT, ch.Ping)
        return ping is not None and ping.pid == server

    assert await run(main) is True


async def test_send_to_terminated(peer: NodeProcess) -> None:
    """SendToTerminated: a node's first message to another goes to a process that has
    ended; the other node lives on and a second process there answers."""

    async def servers() -> tuple[ProcessId, ProcessId]:
        pid, ref = await spawn_monitor_remote(peer.node_id, closure(ch.quick))
        assert (await down(ref)).reason == DiedNormal()
        return pid, await spawn(peer.node_id, closure(ch.ping_server))

    dead, server = await run(servers)

    async def main() -> Any:
        send(dead, "Hi")  # the first message of this node to the peer
        send(server, ch.Pong(get_self_pid()))
        ping = await expect_timeout(WAIT, ch.Ping)
        kill(server, "done")
        return ping

    assert await run(main) == ch.Ping(server)


async def test_typed_channels(peer: NodeProcess) -> None:
    """TypedChannnels: a send port goes to another node on a channel, and is answered on."""

    async def main() -> Any:
        await spawn(peer.node_id, closure(ch.typed_server, get_self_pid()))
        server_port = await expect(SendPort)
        sp, rp = new_chan(bool)
        send_chan(server_port, (sp, 5))
        return await receive_chan_timeout(rp, WAIT)

    assert await run(main) is False


async def test_registry_remote_process(peer: NodeProcess) -> None:
    """RegistryRemoteProcess: a local name for a process of another node; nsend reaches it."""

    async def main() -> tuple[bool, Any]:
        server = await spawn(peer.node_id, closure(ch.ping_server))
        register("ping", server)
        found = whereis("ping") == server
        nsend("ping", ch.Pong(get_self_pid()))
        ping = await expect_timeout(WAIT, ch.Ping)
        kill(server, "done")
        return found, ping == ch.Ping(server)

    assert await run(main) == (True, True)


async def test_remote_registry(peer: NodeProcess) -> None:
    """RemoteRegistry: register_remote_async, whereis_remote and nsend_remote on another
    node; the `RegisterReply` says whether it was done and who holds the name after."""

    async def main() -> list[Any]:
        node, me = peer.node_id, get_self_pid()
        server = await spawn(node, closure(ch.ping_server))
        dead, ref = await spawn_monitor_remote(node, closure(ch.quick))
        await down(ref)
        replies = []
        for name, pid in (("ch-ping", server), ("ch-dead", dead), ("ch-ping", dead)):
            register_remote_async(node, name, pid)
            replies.append(await expect(RegisterReply))
            if len(replies) == 1:
                assert await whereis_remote(node, "ch-ping") == server
                nsend_remote(node, "ch-ping", ch.Pong(me))
                assert await expect_timeout(WAIT, ch.Ping) == ch.Ping(server)
        unregister_remote_async(node, "ch-dead")
        replies.append(await expect(RegisterReply))
        kill(server, "done")  # frees "ch-ping"
        return [(r.name, r.ok, r.pid) for r in replies] + [server]

    *replies, server = await run(main)
    assert replies == [
        ("ch-ping", True, server),  # done
        ("ch-dead", False, None),  # a process that has ended is not registered
        ("ch-ping", False, server),  # taken: and by whom
        ("ch-dead", False, None),  # not registered: nothing to free
    ]


async def test_remote_registry_remote_process(peer: NodeProcess) -> None:
    """RemoteRegistryRemoteProcess: another node's registry names a process of ours;
    nsend_remote to that name comes back here."""

    async def main() -> tuple[Any, ...]:
        server = spawn_local(ch.ping_loop)
        register_remote_async(peer.node_id, "ch-ours", server)
        reply = await expect(RegisterReply)
        found = await whereis_remote(peer.node_id, "ch-ours")
        nsend_remote(peer.node_id, "ch-ours", ch.Pong(get_self_pid()))
        ping = await expect_timeout(WAIT, ch.Ping)
        unregister_remote_async(peer.node_id, "ch-ours")
        await expect(RegisterReply)
        return reply.ok, found == server, ping == ch.Ping(server)

    assert await run(main) == (True, True, True)


async def test_match_any(peer: NodeProcess) -> None:
    """MatchAny: a proxy takes any message (match_any) and forwards it to a math server."""

    async def main() -> tuple[Any, ...]:
        proxy = await spawn(peer.node_id, closure(ch.math_proxy, False))
        me = get_self_pid()
        send(proxy, ch.Add(me, 1.0, 2.0))
        three = await expect(float)
        send(proxy, ch.Divide(me, 8.0, 2.0))
        four = await expect(float)
        send(proxy, ch.Divide(me, 8.0, 0.0))
        by_zero = await expect(ch.DivByZero)
        kill(proxy, "done")
        return three, four, by_zero

    assert await run(main) == (3.0, 4.0, ch.DivByZero())


async def test_match_any_handle(peer: NodeProcess) -> None:
    """MatchAnyHandle: the proxy forwards only Add; a Divide is taken and goes nowhere."""

    async def main() -> tuple[Any, ...]:
        proxy = await spawn(peer.node_id, closure(ch.math_proxy, True))
        me = get_self_pid()
        send(proxy, ch.Add(me, 1.0, 2.0))
        three = await expect(float)
        send(proxy, ch.Divide(me, 8.0, 2.0))
        unanswered = await expect_timeout(0.1, float)
        kill(proxy, "done")
        return three, unanswered

    assert await run(main) == (3.0, None)


async def test_match_any_no_handle(peer: NodeProcess) -> None:
    """MatchAnyNoHandle: a message a clause took is gone, though its handler ignored it."""

    async def main() -> Any:
        me = get_self_pid()
        server = await spawn(peer.node_id, closure(ch.take_one_add_and_ignore_it, me))
        send(server, ch.Add(me, 1.0, 2.0))
        return await expect_timeout(WAIT, tuple)

    assert await run(main) == ("left behind", None)


async def test_match_any_if(peer: NodeProcess) -> None:
    """MatchAnyIf: an echo server whose clause rejects "bar": that one stays unanswered
    (in its mailbox) and later messages are still answered."""

    async def main() -> tuple[Any, ...]:
        server = await spawn(peer.node_id, closure(ch.echo_unless_bar))
        me = get_self_pid()
        send(server, (me, "foo"))
        foo = await expect_timeout(WAIT, str)
        send(server, (me, "bar"))
        bar = await expect_timeout(0.1, str)
        send(server, (me, "baz"))
        baz = await expect_timeout(WAIT, str)
        kill(server, "done")
        return foo, bar, baz

    assert await run(main) == ("foo", None, "baz")


async def test_receive_chan_timeout(peer: NodeProcess) -> None:
    """ReceiveChanTimeout: on a channel fed from another node, a timeout gives None, a
    message within it is taken, 0 only polls."""

    async def main() -> list[Any]:
        sp, rp = new_chan(bool)
        results: list[Any] = [await receive_chan_timeout(rp, 0.1)]  # nothing comes
        await spawn(peer.node_id, closure(ch.send_later, sp, True, 0.1))
        results.append(await receive_chan_timeout(rp, 20))  # comes 0.1 s later
        results.append(await receive_chan_timeout(rp, 0))  # nothing there
        await spawn(peer.node_id, closure(ch.send_later, sp, False, 0))
        for _ in range(100):  # poll until it is there
            await asyncio.sleep(0.1)
            if (got := await receive_chan_timeout(rp, 0)) is not None:
                results.append(got)
                break
        return results

    assert await run(main) == [None, True, None, False]


async def test_chan_lifecycle() -> None:
    """ChanLifecycle: another process holding a channel's receive port gets what is
    sent on it while its owner lives, and nothing sent once the owner has ended."""

    async def owner(report_to: ProcessId) -> None:
        sp, rp = new_chan()
        send(report_to, (sp, rp))  # a local message: the receive port itself
        await expect(str)
        send_chan(sp, "while alive")
        await expect(str)

    async def holder(sp: SendPort, rp: ReceivePort[Any], owner: ProcessId) -> list[Any]:
        send(owner, "go")
        first = await receive_chan_timeout(rp, WAIT)
        ref = monitor(owner)
        send(owner, "end")
        await down(ref)
        send_chan(sp, "after its end")
        return [first, await receive_chan_timeout(rp, 0.2)]

    async def main() -> list[Any]:
        pid = spawn_local(owner, get_self_pid())
        sp, rp = await expect(tuple)
        return await call_local(holder, sp, rp, pid)

    assert await run(main) == ["while alive", None]


async def test_kill_remote(peer: NodeProcess) -> None:
    """KillRemote: kill on another node; the monitor names the killer and the reason."""

    async def main() -> tuple[Any, ...]:
        pid = await spawn(peer.node_id, closure(ch.waiter))
        ref = monitor(pid)
        kill(pid, "TestKill")
        note = await down(ref)
        return note.pid == pid, note.reason, get_self_pid()

    same_pid, reason, me = await run(main)
    assert same_pid and isinstance(reason, DiedException)
    assert str(me) in reason.message and reason.message.endswith("TestKill"), reason


async def test_die() -> None:
    """Die: die's reason is caught by catch_exit as it was given, sent by the caller."""

    async def dies() -> tuple[Any, Any]:
        die_now(("foobar", 123))

    async def main() -> tuple[Any, ...]:
        sender, reason = await catch_exit(dies, lambda sender, reason: (sender, reason))
        return sender == get_self_pid(), reason

    assert await run(main) == (True, ("foobar", 123))


async def test_pretty_exit() -> None:
    """PrettyExit: a ProcessExitException prints as who it is from (and why)."""

    async def main() -> tuple[str, ProcessId]:
        try:
            die_now("timeout")
        except ProcessExitException as e:
            return str(e), e.sender
        return "not raised", get_self_pid()

    text, sender = await run(main)
    assert text == f"exit from {sender}: 'timeout'"


async def test_exit_local() -> None:
    """ExitLocal: a process catches an exit signal (catch_exit) and then ends normally."""

    async def catcher(report_to: ProcessId) -> None:
        send(report_to, "ready")  # no await before the catch: the signal surfaces in it
        caught = await catch_exit(lambda: expect(bytes), lambda sender, reason: reason)
        send(report_to, ("caught", caught))

    async def main() -> tuple[Any, ...]:
        pid = spawn_local(catcher, get_self_pid())
        assert await expect(str) == "ready"
        ref = monitor(pid)
        exit(pid, "TestExit")
        return await expect(tuple), (await down(ref)).reason

    assert await run(main) == (("caught", "TestExit"), DiedNormal())


async def test_exit_remote(peer: NodeProcess) -> None:
    """ExitRemote: the same across nodes: caught there, from us, then a normal end."""

    async def main() -> tuple[Any, ...]:
        me = get_self_pid()
        pid = await spawn(peer.node_id, closure(ch.exit_catcher, me))
        ref = monitor(pid)
        assert await expect_timeout(WAIT, str) == "ready"
        exit(pid, "TestExit")
        caught = await expect_timeout(WAIT, tuple)
        return caught == ("caught", me, "TestExit"), (await down(ref)).reason

    assert await run(main) == (True, DiedNormal())


async def test_call_local() -> None:
    """TextCallLocal: call_local runs in another process; the caller waits for its
    worker to end — also when an exit signal ends the caller (the worker's cleanup has
    run before the caller's own). Interruption and errors: test_primitives."""

    async def caller(keeper: ProcessId) -> None:
        cleaned: list[str] = []

        async def worker() -> None:
            try:
                send(keeper, get_self_pid())
                await expect(bytes)
            finally:
                cleaned.append("worker")

        try:
            await call_local(worker)
        finally:
            send(keeper, list(cleaned))  # what had been cleaned up by then

    async def main() -> tuple[Any, ...]:
        async def whoami() -> ProcessId:
            return get_self_pid()

        other = await call_local(whoami)
        pid = spawn_local(caller, get_self_pid())
        worker = await expect(ProcessId)
        exit(pid, "hi!")
        seen = await expect_timeout(WAIT, list)
        return other != get_self_pid(), worker != pid, seen

    assert await run(main) == (True, True, ["worker"])


async def _usend_through_cuts(peer: NodeProcess, put: Callable[[ProcessId, int], None]) -> None:
    """USend/UForward: every message is sent right after a lost connection; those that
    arrive arrive in order, and some do (*put* reconnects by itself: `send` would drop
    them all until `reconnect`)."""
    count = 20

    async def sender(collector: ProcessId) -> None:
        send(collector, get_self_pid())
        await expect_timeout(WAIT, str)  # "ready"
        for i in range(1, count + 1):
            await break_connection(collector.node)
            put(collector, i)
            await asyncio.sleep(0.03)

    async def main() -> list[int]:
        collector = await spawn(peer.node_id, closure(ch.collect_until_down, get_self_pid()))
        spawn_local(sender, collector)
        got = await expect_timeout(WAIT, list)
        assert got is not None, "the collector did not report"
        return got

    got = await run(main)
    assert got, "none arrived"
    assert got == sorted(set(got)) and set(got) <= set(range(1, count + 1)), got


async def test_usend(peer: NodeProcess) -> None:
    """USend: usend after each of 20 connection losses; what arrives is in order."""
    await _usend_through_cuts(peer, usend)


async def test_uforward(peer: NodeProcess) -> None:
    """UForward: the same with uforward."""
    await _usend_through_cuts(peer, lambda pid, i: uforward(i, pid))


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


# ==================================================================================
# Receive: channel and mailbox clauses in one receive
# ==================================================================================


async def test_receive() -> None:
    """testReceive: in one receive_wait, channel clauses (match_chan) and mailbox
    clauses are tried in the order given, as Cloud Haskell does (runs of each kind in
    turn). Read with its messages sent to the process under test (Cloud Haskell's test
    sends some to an earlier, killed one, and cannot fail: its failures are not seen)."""

    def said(n: int) -> Callable[[str], str]:
        return lambda s: f"received{n} {s}"

    def only(text: str) -> Callable[[str], bool]:
        return lambda s: s == text

    async def receiver(go: ReceivePort[None], sync: SendPort, clauses: list[Match[str]]) -> None:
        while True:
            await receive_chan(go)
            send_chan(sync, await receive_wait(*clauses))

    async def scenario(layout: str, steps: list[str]) -> list[str]:
        """*layout*: one letter per clause, ``1``/``2`` a channel, else a mailbox clause
        for that word's first letter; each step sends its words (``1:a``: "a" on channel
        1, ``foo``: "foo" to the mailbox), then lets one receive happen."""
        go_sp, go_rp = new_chan()
        sync_sp, sync_rp = new_chan(str)
        chans = {k: new_chan(str) for k in "12"}
        words = {"f": "foo", "b": "bar"}
        clauses = [
            match_chan(chans[c][1], said(n))
            if c in chans
            else match_if(str, only(words[c]), said(n))
            for n, c in enumerate(layout, start=1)
        ]
        pid = spawn_local(receiver, go_rp, sync_sp, clauses)
        out = []
        for step in steps:
            for word in step.split():
                if ":" in word:
                    send_chan(chans[word[0]][0], word[2:])
                else:
                    send(pid, word)
            send_chan(go_sp, None)
            got = await receive_chan_timeout(sync_rp, WAIT)
            assert got is not None, f"no receive for {step!r}"
            out.append(got)
        kill(pid, "BANG")
        return out

    async def main() -> list[list[str]]:
        return [
            await scenario("12", ["1:a", "2:b", "1:a 2:b", ""]),
            await scenario("1f", ["1:a", "foo", "1:a foo", "1:a bar", ""]),
            await scenario("f1", ["1:a", "foo", "1:a foo", "1:a bar", ""]),
            await scenario("f1b", ["1:a", "foo", "bar", "1:a foo", "bar", "foo", ""]),
        ]

    assert await run(main) == [
        ["received1 a", "received2 b", "received1 a", "received2 b"],
        ["received1 a", "received2 foo", "received1 a", "received1 a", "received2 foo"],
        ["received2 a", "received1 foo", "received1 foo", "received2 a", "received2 a"],
        [
            "received2 a",
            "received1 foo",
            "received3 bar",
            "received1 foo",
            "received2 a",
            "received1 foo",
            "received3 bar",
        ],
    ]


# ==================================================================================
# Tracing and Mx events
# ==================================================================================


async def test_trace_sending() -> None:
    """Trace Send(er): a send is traced with its sender, its recipient and what it is."""

    async def main() -> tuple[Any, ...]:
        pid = spawn_local(expect, str)
        sp, rp = new_chan(TraceEvent)
        start_tracer(forward_events, sp, kinds=("sent",))
        send(pid, "hello there")
        ev = await receive_chan_timeout(rp, WAIT)
        stop_tracer()
        assert ev is not None
        return ev.kind, ev.pid == get_self_pid(), ev.other == pid, ev.detail

    assert await run(main) == ("sent", True, True, "str")


async def test_trace_sending_every_way() -> None:
    """Mx send events: usend, nsend, a channel send and an nsend_remote are traced
    with their sender, like a plain send."""

    async def main() -> list[tuple[Any, ...]]:
        me = get_self_pid()
        pid = spawn_local(expect, str)
        register("sink", pid)
        chan, _ = new_chan(str)
        sp, rp = new_chan(TraceEvent)
        start_tracer(forward_events, sp, kinds=("sent",))
        usend(pid, "by usend")
        nsend("sink", "by nsend")
        send_chan(chan, "on a channel")
        nowhere = NodeId("127.0.0.1", free_port())
        nsend_remote(nowhere, "far", "by nsend_remote")
        events = []
        for _ in range(4):
            ev = await receive_chan_timeout(rp, WAIT)
            assert ev is not None
            events.append((ev.pid == me, ev.other, ev.node, ev.detail))
        stop_tracer()
        return [
            *[(frm, other == pid, node, detail) for frm, other, node, detail in events[:2]],
            (events[2][0], events[2][1] == chan.pid, events[2][2], events[2][3]),
            (events[3][0], events[3][1], events[3][2] == nowhere, events[3][3]),
        ]

    assert await run(main) == [
        (True, True, None, "str"),
        (True, True, None, "str"),
        (True, True, None, "str (channel)"),
        (True, None, True, "str (to 'far')"),
    ]


async def test_trace_unregistration() -> None:
    """Trace Unregistration: a process freeing its name is traced with the name."""

    async def frees(name: str) -> None:
        await expect(str)
        unregister(name)
        await expect(str)

    async def main() -> tuple[Any, ...]:
        pid = spawn_local(frees, "foobar")
        register("foobar", pid)
        sp, rp = new_chan(TraceEvent)
        start_tracer(forward_events, sp, kinds=("unregistered",))
        send(pid, "go")
        events = await next_events(rp, 1)
        stop_tracer()
        kill(pid, "done")
        return events, pid

    events, pid = await run(main)
    assert events == [("unregistered", pid, "foobar")]


async def test_system_logger_tracer() -> None:
    """SystemLoggerTracer (MxReceive, MxSent, MxProcessDied, MxSpawned, MxRegistered,
    MxUnRegistered): each event is traced once and only once."""

    async def quick() -> None:
        return None

    async def main() -> tuple[list[TraceEvent], ProcessId, ProcessId]:
        me = get_self_pid()
        sp, rp = new_chan(TraceEvent)
        start_tracer(forward_events, sp, kinds=TRACE_KINDS - {"node_up", "node_down"})
        send(me, None)
        await expect(NoneType)
        pid, ref = spawn_monitor(quick)
        await down(ref)
        register("a", me)
        unregister("a")
        register("sentinel", me)  # traced after everything above
        events = []
        while (ev := await receive_chan_timeout(rp, WAIT)) is not None:
            if (ev.kind, ev.detail) == ("registered", "sentinel"):
                break
            events.append(ev)
        stop_tracer()
        return events, me, pid

    events, me, pid = await run(main)
    seen = [(e.kind, e.pid, e.other, e.detail) for e in events if me in (e.pid, e.other)]
    seen += [(e.kind, e.pid, e.other, e.detail) for e in events if e.pid == pid]
    assert sorted(seen, key=repr) == sorted(
        [
            ("sent", me, me, "NoneType"),
            ("received", me, me, "NoneType"),
            ("registered", me, None, "a"),
            ("unregistered", me, None, "a"),
            ("spawned", pid, None, "test_system_logger_tracer.<locals>.quick"),
            ("died", pid, None, "DiedNormal()"),
        ],
        key=repr,
    )


async def test_name_registration_events() -> None:
    """Mx NameRegistrationEvents: register, unregister, register again, and reregister
    (which frees the name from one process and gives it to another) are traced."""

    async def main() -> tuple[Any, ...]:
        p1, p2 = spawn_local(expect, str), spawn_local(expect, str)
        sp, rp = new_chan(TraceEvent)
        start_tracer(forward_events, sp, kinds=("registered", "unregistered"))
        register("label", p1)
        unregister("label")
        register("label", p2)
        reregister("label", p1)
        events = await next_events(rp, 5)
        gone, ref = spawn_monitor(asyncio.sleep, 0)
        await down(ref)
        with pytest.raises(ProcessRegistrationException):
            reregister("label", gone)  # refused: the name stays, nothing is traced
        stays = whereis("label") == p1 and await receive_chan_timeout(rp, 0.05) is None
        stop_tracer()
        return events, p1, p2, stays

    events, p1, p2, stays = await run(main)
    assert stays
    assert events == [
        ("registered", p1, "label"),
        ("unregistered", p1, "label"),
        ("registered", p2, "label"),
        ("unregistered", p2, "label"),
        ("registered", p1, "label"),
    ]


async def test_post_death_name_unregistration_events(peer: NodeProcess) -> None:
    """Mx PostDeathNameUnRegistrationEvents: the names of a process that ends (of
    another node, or of this one) are freed, and each is traced as unregistered."""

    async def main() -> tuple[Any, ...]:
        far = await spawn(peer.node_id, closure(ch.waiter))
        near = spawn_local(expect, str)
        sp, rp = new_chan(TraceEvent)
        start_tracer(forward_events, sp, kinds=("registered", "unregistered"))
        for name, pid in (("aaaaa", far), ("bbbbb", far), ("ccccc", near)):
            register(name, pid)
        registered = await next_events(rp, 3)
        kill(far, "goodbye")
        send(near, "bye")
        freed = await next_events(rp, 3)
        stop_tracer()
        names = [whereis(n) for n in ("aaaaa", "bbbbb", "ccccc")]
        return registered, sorted(freed, key=repr), names, far, near

    registered, freed, names, far, near = await run(main)
    assert registered == [
        ("registered", far, "aaaaa"),
        ("registered", far, "bbbbb"),
        ("registered", near, "ccccc"),
    ]
    assert freed == sorted(
        [
            ("unregistered", far, "aaaaa"),
            ("unregistered", far, "bbbbb"),
            ("unregistered", near, "ccccc"),
        ],
        key=repr,
    )
    assert names == [None, None, None]


# ==================================================================================
# Closure: remote spawns
# ==================================================================================


async def test_spawn_invalid(peer: NodeProcess) -> None:
    """SpawnInvalid: spawn_monitor_remote of a closure no node knows, here and there:
    the child dies at once, and the monitor says so (spawn itself raises: docs/runtime.md)."""

    async def main() -> list[Any]:
        results = []
        for node in (get_self_node(), peer.node_id):
            pid, ref = await spawn_monitor_remote(node, closure("ThisDoesNotExist"))
            note = await down(ref)
            results.append((note.pid == pid, type(note.reason).__name__))
        return results

    assert await run(main) == [(True, "DiedException")] * 2


async def test_fib(peer: NodeProcess) -> None:
    """Fib: fib 10 computed by processes spawned at random on two nodes, over channels."""

    async def main() -> Any:
        sp, rp = new_chan(int)
        spawn_local(ch.dfib, [get_self_node(), peer.node_id], sp, 10)
        return await receive_chan_timeout(rp, WAIT)

    assert await run(main) == 55


async def test_spawn_reconnect(peer: NodeProcess) -> None:
    """SpawnReconnect: spawn works again after the connection to its node was lost."""

    async def main() -> tuple[Any, ...]:
        me = get_self_pid()
        signalled: Match[Any] = match(NoneType, lambda _: True)
        await spawn(peer.node_id, closure(ch.signal, me))
        first = await receive_timeout(WAIT, signalled)
        await break_connection(peer.node_id)
        for _ in range(2):
            await spawn(peer.node_id, closure(ch.signal, me))
        after = [await receive_timeout(WAIT, signalled) for _ in range(2)]
        extra = await receive_timeout(0.1, signalled)
        return first, after, extra

    assert await run(main) == (True, [True, True], None)


async def test_spawn_terminate(peer: NodeProcess) -> None:
    """SpawnTerminate: 1,000 processes each spawn on another node and end at once;
    every child runs."""

    async def spawner(me: ProcessId) -> None:
        await spawn(peer.node_id, closure(ch.signal, me))

    async def main() -> int:
        me = get_self_pid()
        for _ in range(1000):
            spawn_local(spawner, me)
        got = 0
        while got < 1000 and await receive_timeout(WAIT, match(NoneType, lambda _: True)):
            got += 1
        return got

    assert await run(main) == 1000
