"""Cloud Haskell's tests of basic features (distributed-process-tests' ``CH``).

Each is mirrored where no other cloudy test checks the same thing, and named after the
Cloud Haskell test it mirrors; the deliberate differences (docs/runtime.md) are not
repeated here. Where Cloud Haskell runs two nodes, the second is a node in its own OS
process (`peer`, shared by the module: ``conftest.py``); where it breaks a connection
(``testBreakConnection``), `cut` resets the TCP connections between the two nodes
(``ss -K``), and both ends see the loss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import ch_funcs as ch
from ch_support import WAIT, break_connection, down, run

from cloudy import (
    DiedException,
    DiedNormal,
    ProcessExitException,
    ProcessId,
    ReceivePort,
    RegisterReply,
    SendPort,
    call_local,
    catch_exit,
    closure,
    exit,
    expect,
    expect_timeout,
    get_self_pid,
    kill,
    monitor,
    new_chan,
    nsend,
    nsend_remote,
    receive_chan_timeout,
    register,
    register_remote_async,
    send,
    send_chan,
    spawn,
    spawn_local,
    spawn_monitor_remote,
    uforward,
    unregister_remote_async,
    usend,
    whereis,
    whereis_remote,
)
from cloudy import die as die_now
from cloudy.testing import NodeProcess

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
