"""The process API across nodes in different OS processes."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import remote_funcs as rf

from cloudy import (
    CloudyError,
    DiedDisconnect,
    DiedException,
    DiedNormal,
    DiedUnknownId,
    LocalNode,
    Message,
    MonitorRef,
    NodeId,
    NodeMonitorNotification,
    NodeUnreachable,
    ProcessId,
    ProcessLinkException,
    ProcessMonitorNotification,
    RemoteCallError,
    RemoteTable,
    SendPort,
    WhereIsReply,
    call,
    closure,
    exit,
    expect,
    expect_timeout,
    get_self_node,
    get_self_pid,
    kill,
    link,
    monitor,
    monitor_node,
    new_chan,
    nsend_remote,
    receive_chan,
    register,
    reregister,
    send,
    spawn,
    whereis,
    whereis_remote_async,
)
from cloudy.testing import NodeProcess, free_port

COOKIE = "remote-tests"
# Generous: a notification that is due at once must arrive well within it.
WAIT = 10.0


@pytest.fixture(scope="module")
def peer() -> Iterator[NodeProcess]:
    with NodeProcess("remote_funcs", cookie=COOKIE) as node:
        yield node


async def run(main: Callable[..., Any], *args: Any, **options: Any) -> Any:
    options.setdefault("cookie", COOKIE)
    async with LocalNode("127.0.0.1", 0, **options) as node:
        return await asyncio.wait_for(node.run_process(main, *args), 30)


class OnlyHere(Message):
    """A type the peer does not know (this module is not imported there)."""

    text: str


# --- messages ---------------------------------------------------------------------------


async def test_ids_and_messages_nested_anywhere_arrive_as_the_same_types(
    peer: NodeProcess,
) -> None:
    async def main() -> tuple[Any, Any]:
        me = get_self_pid()
        port, _ = new_chan()
        payload = {
            "pids": [me, ProcessId(get_self_node(), 99)],
            "node": get_self_node(),
            "pair": (1, me, (2.5, "x")),
            "ref": MonitorRef(get_self_node(), 7),
            "port": port,
            "sample": rf.Sample(1, 2.0, anything=[rf.Sample(2, 3.0, anything=(me,))]),
            "bytes": b"\x00\xff",
        }
        echo = await spawn(peer.node_id, closure(rf.echo_server))
        send(echo, rf.Echo(me, payload))
        return payload, await expect(dict)

    sent, got = await run(main)
    assert got == sent
    assert type(got["pids"][0]) is ProcessId
    assert type(got["node"]) is NodeId
    assert type(got["pair"]) is tuple and type(got["pair"][2]) is tuple
    assert type(got["ref"]) is MonitorRef
    assert type(got["port"]) is SendPort
    assert type(got["sample"].anything[0]) is rf.Sample
    assert type(got["sample"].anything[0].anything) is tuple


async def test_messages_between_two_processes_arrive_in_order(peer: NodeProcess) -> None:
    async def main() -> list[int]:
        echo = await spawn(peer.node_id, closure(rf.echo_server))
        me = get_self_pid()
        for i in range(2000):
            send(echo, rf.Echo(me, i))
        return [await expect(int) for _ in range(2000)]

    assert await run(main) == list(range(2000))


async def test_a_typed_channel_works_across_nodes(peer: NodeProcess) -> None:
    async def main() -> list[str]:
        port, receive_port = new_chan()
        await call(peer.node_id, closure(rf.send_on, port, ["one", "two"]))
        return [await receive_chan(receive_port) for _ in range(2)]

    assert await run(main) == ["one", "two"]


async def test_a_message_of_a_type_the_peer_does_not_know_is_dropped_and_logged(
    peer: NodeProcess, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> str:
        echo = await spawn(peer.node_id, closure(rf.echo_server))
        me = get_self_pid()
        send(echo, rf.Echo(me, OnlyHere("lost")))
        send(echo, rf.Echo(me, "after"))
        return await expect(str)  # the connection and the process carry on

    assert await run(main) == "after"
    assert "test_remote.OnlyHere" in peer.log()
    assert "dropped a message from nid://127.0.0.1:" in peer.log()
    # and the sender's side hears of it too
    assert f"{peer.node_id} dropped a message from this node" in caplog.text
    assert "test_remote.OnlyHere" in caplog.text


async def test_nsend_remote_and_whereis_remote_async(peer: NodeProcess) -> None:
    async def main() -> tuple[WhereIsReply, WhereIsReply, str]:
        nsend_remote(peer.node_id, "echo", rf.Echo(get_self_pid(), "via name"))
        reply = await expect(str)
        whereis_remote_async(peer.node_id, "echo")
        found = await expect(WhereIsReply)
        whereis_remote_async(peer.node_id, "nobody")
        missing = await expect(WhereIsReply)
        return found, missing, reply

    found, missing, reply = await run(main)
    assert reply == "via name"
    assert found.name == "echo" and found.pid is not None and found.pid.node == peer.node_id
    assert missing == WhereIsReply("nobody", None)


# --- spawn and call ---------------------------------------------------------------------


async def test_call_returns_the_remote_result(peer: NodeProcess) -> None:
    async def main() -> int:
        result: int = await call(peer.node_id, closure(rf.add, 2, 3))
        return result

    assert await run(main) == 5


async def test_call_reraises_a_remote_exception_with_its_message(peer: NodeProcess) -> None:
    async def main() -> None:
        await call(peer.node_id, closure(rf.fail, "boom"))

    with pytest.raises(RemoteCallError, match="ValueError: boom") as info:
        await run(main)
    assert isinstance(info.value, CloudyError)


async def test_spawn_of_a_name_not_in_the_remote_table_is_a_clear_error(
    peer: NodeProcess,
) -> None:
    from cloudy import Closure

    async def main() -> None:
        await spawn(peer.node_id, Closure("os.system", ("echo pwned",)))

    with pytest.raises(CloudyError, match=r"'os.system' is not in the remote table"):
        await run(main)


async def test_spawn_towards_an_unreachable_node_raises_promptly() -> None:
    nowhere = NodeId("127.0.0.1", free_port())

    async def main() -> None:
        await spawn(nowhere, closure(rf.add, 1, 2))

    start = time.monotonic()
    with pytest.raises(NodeUnreachable) as info:
        await run(main, connect_timeout=2.0)
    assert time.monotonic() - start < 2.5
    assert str(nowhere) in str(info.value)


# --- monitors, links, exits ---------------------------------------------------------------


async def test_monitoring_a_remote_process_reports_how_it_ended(peer: NodeProcess) -> None:
    async def main() -> tuple[Any, ...]:
        reasons: list[Any] = []
        for stop in (rf.Stop(), rf.Crash("bad day")):
            pid = await spawn(peer.node_id, closure(rf.waiter))
            ref = monitor(pid)
            send(pid, stop)
            note = await expect(ProcessMonitorNotification)
            assert (note.ref, note.pid) == (ref, pid)
            reasons.append(note.reason)
        pid = await spawn(peer.node_id, closure(rf.waiter))
        monitor(pid)
        kill(pid, "enough")
        reasons.append((await expect(ProcessMonitorNotification)).reason)
        return tuple(reasons)

    normal, crashed, killed = await run(main)
    assert normal == DiedNormal()
    assert crashed == DiedException("RuntimeError: bad day")
    assert isinstance(killed, DiedException) and killed.message.endswith(": enough")


async def test_monitoring_a_pid_that_does_not_exist_reports_died_unknown_id(
    peer: NodeProcess,
) -> None:
    async def main() -> Any:
        monitor(ProcessId(peer.node_id, 10_000_000))
        return (await expect(ProcessMonitorNotification)).reason

    assert await run(main) == DiedUnknownId()


async def test_a_link_to_a_remote_process_that_crashes_raises_in_the_linker(
    peer: NodeProcess,
) -> None:
    async def main() -> str:
        pid = await spawn(peer.node_id, closure(rf.waiter))
        link(pid)
        send(pid, rf.Crash("linked"))
        try:
            await expect(rf.Stop)  # never sent: the link exception comes first
        except ProcessLinkException as e:
            assert e.pid == pid
            return str(e.reason)
        return "not raised"

    assert "linked" in await run(main)


async def test_a_monitor_towards_an_unreachable_node_gets_died_disconnect() -> None:
    nowhere = NodeId("127.0.0.1", free_port())

    async def main() -> tuple[Any, Any]:
        monitor(ProcessId(nowhere, 1))
        ref = monitor_node(nowhere)
        first = await expect(ProcessMonitorNotification)
        second = await expect(NodeMonitorNotification)
        assert second.ref == ref
        return first.reason, second.reason

    assert await run(main, connect_timeout=2.0) == (DiedDisconnect(), DiedDisconnect())


# --- failures of the peer ------------------------------------------------------------------


async def test_kill_9_of_a_peer_tells_every_monitor() -> None:
    with NodeProcess("remote_funcs", cookie=COOKIE) as doomed:

        async def main() -> tuple[Any, Any, float]:
            pid = await spawn(doomed.node_id, closure(rf.waiter))
            monitor(pid)
            monitor_node(doomed.node_id)
            start = time.monotonic()
            doomed.signal(signal.SIGKILL)
            note = await expect_timeout(WAIT, ProcessMonitorNotification)
            node_note = await expect_timeout(WAIT, NodeMonitorNotification)
            return note, node_note, time.monotonic() - start

        note, node_note, _ = await run(main)
        assert note is not None and note.reason == DiedDisconnect()
        assert node_note is not None and node_note.node == doomed.node_id


async def until_none(name: str) -> float:
    """Seconds until *name* is no longer registered here (within WAIT)."""
    start = time.monotonic()
    while whereis(name) is not None:
        assert time.monotonic() - start < WAIT, f"{name!r} is still registered"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def test_a_name_for_a_remote_process_is_freed_when_it_ends(peer: NodeProcess) -> None:
    async def main() -> float:
        pid = await spawn(peer.node_id, closure(rf.waiter))
        register("far-away", pid)
        assert whereis("far-away") == pid
        send(pid, rf.Stop())
        return await until_none("far-away")

    await run(main)


async def test_a_name_for_a_remote_process_is_freed_when_its_node_is_lost() -> None:
    with NodeProcess("remote_funcs", cookie=COOKIE) as doomed:

        async def main() -> float:
            pid = await spawn(doomed.node_id, closure(rf.waiter))
            register("doomed", pid)
            other = await spawn(doomed.node_id, closure(rf.waiter))
            register("kept", get_self_pid())  # a local name is not touched
            reregister("kept", get_self_pid())
            register("moved", other)
            reregister("moved", get_self_pid())  # no longer names the remote one
            doomed.signal(signal.SIGKILL)
            waited = await until_none("doomed")
            await asyncio.sleep(0.1)
            assert whereis("moved") == get_self_pid() and whereis("kept") == get_self_pid()
            return waited

        await run(main)


async def test_a_frozen_peer_is_declared_lost_by_the_heartbeat() -> None:
    with NodeProcess("remote_funcs", cookie=COOKIE, heartbeat_timeout=1.0) as frozen:

        async def main() -> tuple[Any, Any]:
            pid = await spawn(frozen.node_id, closure(rf.waiter))
            monitor(pid)
            monitor_node(frozen.node_id)
            frozen.signal(signal.SIGSTOP)
            try:
                note = await expect_timeout(WAIT, ProcessMonitorNotification)
                node_note = await expect_timeout(WAIT, NodeMonitorNotification)
            finally:
                frozen.signal(signal.SIGCONT)
            return note, node_note

        note, node_note = await run(main, heartbeat_timeout=1.0)
        assert note is not None and note.reason == DiedDisconnect()
        assert node_note is not None and node_note.reason == DiedDisconnect()


async def test_sending_after_a_lost_connection_opens_a_new_one() -> None:
    port = free_port()
    with NodeProcess("remote_funcs", cookie=COOKIE, port=port) as first:

        async def before() -> int:
            result: int = await call(first.node_id, closure(rf.add, 1, 1))
            monitor_node(first.node_id)
            first.signal(signal.SIGKILL)
            await expect_timeout(WAIT, NodeMonitorNotification)
            return result

        async with LocalNode("127.0.0.1", 0, cookie=COOKIE) as node:
            assert await node.run_process(before) == 2
            with NodeProcess("remote_funcs", cookie=COOKIE, port=port) as second:

                async def after() -> int:
                    result: int = await call(second.node_id, closure(rf.add, 2, 2))
                    return result

                assert await asyncio.wait_for(node.run_process(after), 30) == 4


async def test_exit_raises_in_a_remote_process_which_ends_unless_it_catches(
    peer: NodeProcess,
) -> None:
    async def main() -> Any:
        pid = await spawn(peer.node_id, closure(rf.waiter))
        monitor(pid)
        exit(pid, "please stop")
        return (await expect(ProcessMonitorNotification)).reason

    reason = await run(main)
    assert isinstance(reason, DiedException)
    assert "please stop" in reason.message


async def test_a_node_with_an_explicit_table_runs_only_what_is_in_it() -> None:
    table = RemoteTable()
    table.register(rf.add)
    async with (
        LocalNode("127.0.0.1", 0, remote_table=table, cookie=COOKIE) as server,
        LocalNode("127.0.0.1", 0, cookie=COOKIE) as client,
    ):

        async def main() -> tuple[int, str]:
            result: int = await call(server.node_id, closure(rf.add, 1, 2))
            try:
                await call(server.node_id, closure(rf.fail, "never runs"))
            except CloudyError as e:
                return result, str(e)
            return result, "ran"

        result, error = await asyncio.wait_for(client.run_process(main), 20)
    assert result == 3
    assert "remote_funcs.fail' is not in the remote table" in error


async def test_a_burst_larger_than_the_frame_limit_is_split_and_a_huge_message_goes_in_parts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = 64 * 1024
    async with (
        LocalNode("127.0.0.1", 0, cookie=COOKIE, max_frame_size=limit) as a,
        LocalNode("127.0.0.1", 0, cookie=COOKIE, max_frame_size=limit) as b,
    ):

        async def main() -> tuple[str, list[int], Any]:
            echo = await spawn(b.node_id, closure(rf.echo_server))
            me = get_self_pid()
            monitor(echo)
            send(echo, rf.Echo(me, "x" * (5 * limit + 7)))  # too big for any one frame
            for i in range(100):  # ~1 MB in one loop turn: many frames
                send(echo, rf.Echo(me, (i, "y" * 10_000)))
            huge = await expect(str)  # there and back, in parts both ways
            got = [(await expect(tuple))[0] for _ in range(100)]
            lost = await expect_timeout(0.2, ProcessMonitorNotification)
            return huge, got, lost

        huge, got, lost = await asyncio.wait_for(a.run_process(main), 30)
    assert huge == "x" * (5 * limit + 7)
    assert got == list(range(100))  # and after it, in order
    assert lost is None  # the connection stayed up
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_message_over_the_default_frame_limit_arrives_whole_and_in_order(
    peer: NodeProcess,
) -> None:
    size = 100 * 1024 * 1024  # over the 64 MiB frame limit: it goes in parts

    async def main() -> tuple[list[Any], int]:
        echo = await spawn(peer.node_id, closure(rf.echo_server))
        me = get_self_pid()
        big = bytes(range(256)) * (size // 256)
        send(echo, rf.Echo(me, "before"))
        send(echo, rf.Echo(me, big))
        send(echo, rf.Echo(me, "after"))
        got = [await expect(object) for _ in range(3)]
        back = got[1]
        assert isinstance(back, bytes)
        return [got[0], back == big, got[2]], len(back)

    got, length = await asyncio.wait_for(run(main), 60)
    assert got == ["before", True, "after"] and length == size
