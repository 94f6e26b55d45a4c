"""Cloud Haskell's primitives that end the caller (`die`, `terminate`), wait on a
channel with a timeout (`receive_chan_timeout`), ask another node for a name and
await the answer (`whereis_remote`), and the combinators `call_local`, `spawn_async`
and `catches_exit` (the peer node in its own OS process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import remote_funcs as rf

from cloudy import (
    DidSpawn,
    DiedException,
    LocalNode,
    NodeId,
    PortMonitorNotification,
    ProcessExitException,
    ProcessId,
    ProcessMonitorNotification,
    ProcessTerminationException,
    RegisterReply,
    SpawnError,
    TraceEvent,
    call,
    call_local,
    catches_exit,
    closure,
    exit,
    expect,
    forward,
    get_node_stats,
    get_process_info_remote,
    get_self_pid,
    kill,
    match,
    match_chan,
    merge_ports_biased,
    merge_ports_rr,
    monitor,
    monitor_port,
    new_chan,
    receive_chan_timeout,
    receive_timeout,
    receive_wait,
    register,
    register_remote_async,
    send,
    send_chan,
    spawn,
    spawn_async,
    spawn_channel,
    spawn_channel_local,
    spawn_local,
    spawn_monitor_remote,
    spawn_supervised,
    start_tracer,
    stop_tracer,
    terminate,
    unregister_remote_async,
    whereis_remote,
)
from cloudy import die as die_now
from cloudy.testing import NodeProcess, free_port

COOKIE = "test-primitives"


async def run(main: Callable[..., Any], *args: Any) -> Any:
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE) as node:
        return await asyncio.wait_for(node.run_process(main, *args), 30)


async def ended_with(body: Callable[[], Any]) -> Any:
    """The reason a process running *body* ends with, as its monitor sees it."""

    async def watch() -> Any:
        ref = monitor(spawn_local(body))
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref
        return note.reason

    return await run(watch)


async def test_die_ends_the_caller_with_its_reason() -> None:
    async def body() -> None:
        die_now("out of coffee")

    reason = await ended_with(body)
    assert isinstance(reason, DiedException)
    assert "out of coffee" in reason.message


async def test_terminate_ends_the_caller_abnormally_unless_it_catches_it() -> None:
    async def body() -> None:
        terminate()

    reason = await ended_with(body)
    assert isinstance(reason, DiedException)
    assert "ProcessTerminationException" in reason.message

    async def survivor() -> str:
        try:
            terminate()
        except ProcessTerminationException:
            return "caught"

    assert await run(survivor) == "caught"


async def test_receive_chan_timeout_gives_what_is_there_or_none_in_time() -> None:
    async def main() -> tuple[Any, Any, Any, float]:
        sp, rp = new_chan()
        send_chan(sp, "first")
        now = await receive_chan_timeout(rp, 0)  # already there: no wait at all
        started = time.monotonic()
        nothing = await receive_chan_timeout(rp, 0.2)
        waited = time.monotonic() - started

        async def later() -> None:
            await asyncio.sleep(0.05)
            send_chan(sp, "second")

        spawn_local(later)
        arrived = await receive_chan_timeout(rp, 5)
        return now, nothing, arrived, waited

    now, nothing, arrived, waited = await run(main)
    assert (now, nothing, arrived) == ("first", None, "second")
    assert waited >= 0.19


@pytest.fixture(scope="module")
def peer() -> Iterator[NodeProcess]:
    with NodeProcess("remote_funcs", cookie=COOKIE) as node:
        yield node


async def test_whereis_remote_answers_across_os_processes(peer: NodeProcess) -> None:
    async def main() -> tuple[Any, Any]:
        return await whereis_remote(peer.node_id, "echo"), await whereis_remote(
            peer.node_id, "nobody"
        )

    found, missing = await run(main)
    assert found is not None and found.node == peer.node_id
    assert missing is None


async def test_whereis_remote_of_a_node_that_is_not_there_raises_in_time() -> None:
    nowhere = NodeId("127.0.0.1", free_port())

    async def main() -> None:
        await whereis_remote(nowhere, "echo", seconds=1.0)

    with pytest.raises(TimeoutError, match="did not say who 'echo' is"):
        await run(main)


async def test_call_local_returns_the_result_or_raises_the_error_of_its_process() -> None:
    async def double(x: int) -> int:
        return 2 * x

    async def broken() -> None:
        raise ValueError("no")

    async def main() -> tuple[int, str]:
        value = await call_local(double, 21)
        try:
            await call_local(broken)
        except ValueError as e:
            return value, str(e)
        return value, "not raised"

    assert await run(main) == (42, "no")


async def test_call_local_ends_its_process_when_an_exit_signal_reaches_the_caller() -> None:
    async def forever(reply_to: Any) -> None:
        send_chan(reply_to, get_self_pid())
        await asyncio.sleep(3600)

    async def caller(reply_to: Any) -> None:
        await call_local(forever, reply_to)

    async def main() -> tuple[Any, Any]:
        sp, rp = new_chan()
        pid = spawn_local(caller, sp)
        worker = await receive_chan_timeout(rp, 5)
        assert worker is not None
        ref = monitor(worker)
        exit(pid, "stop")
        note = await expect(ProcessMonitorNotification)
        return note.ref == ref, note.reason

    same, reason = await run(main)
    assert same and isinstance(reason, DiedException) and "call_local" in reason.message


async def test_spawn_async_reports_did_spawn_with_the_pid_or_why_not(peer: NodeProcess) -> None:
    async def main() -> tuple[Any, ...]:
        good = spawn_async(peer.node_id, closure(rf.echo_server))
        bad = spawn_async(peer.node_id, closure("no_such_function"))
        first = await expect(DidSpawn)
        second = await expect(DidSpawn)
        by_ref = {d.ref: d for d in (first, second)}
        return good != bad, by_ref[good], by_ref[bad]

    distinct, good, bad = await run(main)
    assert distinct
    assert good.pid is not None and good.pid.node == peer.node_id and good.error is None
    assert bad.pid is None and "no_such_function" in bad.error


async def test_catches_exit_runs_the_first_handler_whose_type_matches() -> None:
    async def waits() -> str:
        await expect(str)
        return "no signal"

    async def guarded() -> str:
        return await catches_exit(
            waits,
            (int, lambda sender, reason: f"int {reason}"),
            (str, lambda sender, reason: f"str {reason}"),
        )

    async def main() -> list[Any]:
        results: list[Any] = []
        for reason in ("stop", 7, 2.5):

            async def body(reason: Any = reason) -> None:
                try:
                    results.append(await guarded())
                except ProcessExitException as e:  # no handler for a float: it goes on
                    results.append(("uncaught", e.reason))

            pid = spawn_local(body)
            ref = monitor(pid)
            await asyncio.sleep(0.01)
            exit(pid, reason)
            note = await expect(ProcessMonitorNotification)
            assert note.ref == ref
        return results

    assert await run(main) == ["str stop", "int 7", ("uncaught", 2.5)]


async def test_spawning_an_unknown_closure_raises_spawn_error_on_any_node(
    peer: NodeProcess,
) -> None:
    async def main(node: NodeId) -> str:
        try:
            await spawn(node, closure("no_such_function"))
        except SpawnError as e:
            return str(e)
        return "not raised"

    for node in (None, peer.node_id):
        async with LocalNode("127.0.0.1", 0, cookie=COOKIE) as local:
            where = local.node_id if node is None else node
            said = await asyncio.wait_for(local.run_process(main, where), 30)
        assert "'no_such_function' is not in the remote table" in said, said


async def test_a_remote_child_that_ends_at_once_is_reported_with_its_own_reason(
    peer: NodeProcess,
) -> None:
    """Spawn, then monitor, races with a child that ends at once (`DiedUnknownId`);
    `spawn_monitor_remote` holds the child until its monitor is in place."""

    async def main() -> list[Any]:
        reasons = []
        for _ in range(5):
            pid, ref = await spawn_monitor_remote(peer.node_id, closure(rf.fail, "at once"))
            note = await expect(ProcessMonitorNotification)
            assert note.ref == ref and note.pid == pid
            reasons.append(note.reason)
        return reasons

    for reason in await run(main):
        assert isinstance(reason, DiedException) and "ValueError: at once" in reason.message


async def test_spawn_supervised_links_the_child_to_its_parent_and_monitors_it(
    peer: NodeProcess,
) -> None:
    async def parent(reply_to: Any) -> None:
        pid, _ = await spawn_supervised(peer.node_id, closure(rf.echo_server))
        send_chan(reply_to, pid)
        await asyncio.sleep(3600)

    async def main() -> Any:
        sp, rp = new_chan()
        boss = spawn_local(parent, sp)
        child = await receive_chan_timeout(rp, 10)
        assert child is not None
        ref = monitor(child)
        kill(boss, "gone")  # the child is linked to its parent: it ends too
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref
        return note.reason

    reason = await run(main)
    assert isinstance(reason, DiedException) and "ProcessLinkException" in reason.message


async def test_merged_ports_take_the_first_or_take_turns_and_wait_on_all() -> None:
    async def main() -> tuple[list[Any], list[Any], Any, Any]:
        sa, ra = new_chan()
        sb, rb = new_chan()
        for sp, msg in ((sb, "b1"), (sa, "a1"), (sb, "b2"), (sa, "a2")):
            send_chan(sp, msg)
        biased = merge_ports_biased([ra, rb])
        first_two = [await receive_chan_timeout(biased, 0) for _ in range(2)]
        rest = [await receive_chan_timeout(rb, 0), await receive_chan_timeout(rb, 0)]
        for sp, msg in ((sa, "a3"), (sa, "a4"), (sb, "b3"), (sb, "b4")):
            send_chan(sp, msg)
        turns = merge_ports_rr([ra, rb])
        taken = [await receive_chan_timeout(turns, 0) for _ in range(4)]

        async def later() -> None:
            await asyncio.sleep(0.05)
            send_chan(sb, "late")

        spawn_local(later)
        waited = await receive_chan_timeout(turns, 5)  # waits on both ports
        nothing = await receive_chan_timeout(turns, 0.05)
        return [*first_two, *rest], taken, waited, nothing

    biased, turns, waited, nothing = await run(main)
    assert biased == ["a1", "a2", "b1", "b2"]  # the first port while it has any
    assert turns == ["a3", "b3", "a4", "b4"]
    assert (waited, nothing) == ("late", None)


def test_remotables_and_messages_defined_in_main_are_warned_about(tmp_path: Any) -> None:
    import subprocess
    import sys

    script = tmp_path / "mine.py"
    script.write_text(
        "from cloudy import Message, remotable\n"
        "class Ping(Message):\n"
        "    n: int\n"
        "@remotable\n"
        "def work() -> None: ...\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert "Message Ping is defined in __main__" in done.stderr
    assert "@remotable work is defined in __main__" in done.stderr


async def test_node_stats_and_process_info_of_another_node(peer: NodeProcess) -> None:
    async def main() -> tuple[Any, ...]:
        here = await get_node_stats(get_self_pid().node)
        echo = await whereis_remote(peer.node_id, "echo")
        assert echo is not None
        ref = monitor(echo)
        there = await get_node_stats(peer.node_id)
        info = await get_process_info_remote(echo)
        gone = await get_process_info_remote(ProcessId(echo.node, 999_999))
        return here, there, info, gone, ref

    here, there, info, gone, ref = await run(main)
    assert here.processes >= 1 and here.monitors == 0
    assert there.node == peer.node_id and there.processes >= 1 and there.registered_names >= 1
    assert info is not None and info.node == peer.node_id and "echo" in info.names
    assert any(r == ref for _, r in info.monitors)  # our monitor, seen from its node
    assert gone is None


async def test_register_remote_async_names_a_process_on_another_node(peer: NodeProcess) -> None:
    async def main() -> list[Any]:
        me = get_self_pid()
        register_remote_async(peer.node_id, "visitor", me)
        first = await expect(RegisterReply)
        found = await whereis_remote(peer.node_id, "visitor")
        register_remote_async(peer.node_id, "visitor", me)  # taken: refused
        again = await expect(RegisterReply)
        unregister_remote_async(peer.node_id, "visitor")
        freed = await expect(RegisterReply)
        after = await whereis_remote(peer.node_id, "visitor")
        return [first.ok, found == me, again.ok, freed.ok, after]

    assert await run(main) == [True, True, False, True, None]


async def test_spawn_channel_starts_a_process_with_a_channel_of_its_own(
    peer: NodeProcess,
) -> None:
    async def local_relay(reply_to: Any, port: Any) -> None:
        while (msg := await receive_chan_timeout(port, 10)) not in ("stop", None):
            forward(msg, reply_to)

    async def main() -> list[Any]:
        me = get_self_pid()
        far, far_pid = await spawn_channel(peer.node_id, closure(rf.chan_relay, me))
        near, near_pid = await spawn_channel_local(local_relay, me)
        assert far_pid.node == peer.node_id and near_pid.node == me.node
        got = []
        for port, text in ((far, "over there"), (near, "right here")):
            send_chan(port, text)
            got.append(await expect(str))
            send_chan(port, "stop")
        return got

    assert await run(main) == ["over there", "right here"]


async def test_a_channel_that_names_its_type_refuses_others_at_the_sender(
    peer: NodeProcess,
) -> None:
    async def main() -> tuple[Any, ...]:
        sp, rp = new_chan(int)
        send_chan(sp, 7)
        try:
            send_chan(sp, "seven")
            here = "sent"
        except TypeError as e:
            here = str(e)
        there_ok = await call(peer.node_id, closure(rf.send_typed, sp, 8))
        there_bad = await call(peer.node_id, closure(rf.send_typed, sp, "eight"))
        got = [await receive_chan_timeout(rp, 5), await receive_chan_timeout(rp, 5)]
        nothing = await receive_chan_timeout(rp, 0.05)
        return here, there_ok, there_bad, got, nothing

    here, there_ok, there_bad, got, nothing = await run(main)
    assert "takes int, not str" in here
    assert there_ok == "sent" and there_bad.startswith("refused:") and "not str" in there_bad
    assert got == [7, 8] and nothing is None


async def test_monitor_port_tells_when_the_channel_s_owner_ends(peer: NodeProcess) -> None:
    async def main() -> tuple[Any, ...]:
        me = get_self_pid()
        far, _ = await spawn_channel(peer.node_id, closure(rf.chan_relay, me))
        ref = await monitor_port(far)
        send_chan(far, "stop")  # the relay returns: its channel is gone
        note = await expect(PortMonitorNotification)
        return note.ref == ref, note.port == far, note.reason

    same_ref, same_port, reason = await run(main)
    assert same_ref and same_port and type(reason).__name__ == "DiedNormal"


async def test_a_tracer_hears_spawns_deaths_sends_receives_registrations_and_nodes(
    peer: NodeProcess,
) -> None:
    async def tracer(events: list[TraceEvent]) -> None:
        while True:
            events.append(await expect(TraceEvent))

    async def worker() -> None:
        register("worker", get_self_pid())
        await expect(str)

    async def main() -> list[TraceEvent]:
        events: list[TraceEvent] = []
        everything = ("spawned", "died", "sent", "received", "registered", "node_up")
        start_tracer(tracer, events, kinds=everything)
        pid = spawn_local(worker)
        await asyncio.sleep(0.05)
        send(pid, "go")
        ref = monitor(pid)
        await expect(ProcessMonitorNotification)
        await whereis_remote(peer.node_id, "echo")  # a connection to another node
        await asyncio.sleep(0.05)
        stop_tracer()
        spawn_local(worker)  # not heard: tracing stopped
        await asyncio.sleep(0.05)
        assert ref is not None
        return events

    events = await run(main)
    kinds = [(e.kind, e.detail) for e in events]
    workers = [e for e in events if e.kind == "spawned" and e.detail.endswith(".worker")]
    assert len(workers) == 1  # the second, after stop_tracer, was not heard
    assert ("registered", "worker") in kinds
    assert ("sent", "str") in kinds and ("received", "str") in kinds
    assert any(k == "died" and "DiedNormal" in d for k, d in kinds)
    assert any(e.kind == "node_up" and e.node == peer.node_id for e in events)


async def test_match_chan_waits_on_a_channel_and_the_mailbox_together() -> None:
    async def main() -> list[Any]:
        me = get_self_pid()
        sp, rp = new_chan()
        clauses = (match_chan(rp, lambda v: ("chan", v)), match(str, lambda s: ("mail", s)))

        async def later(what: str) -> None:
            await asyncio.sleep(0.05)
            if what == "chan":
                send_chan(sp, 1)
            else:
                send(me, "hi")

        got = []
        for what in ("chan", "mail"):  # whichever comes, while waiting on both
            spawn_local(later, what)
            got.append(await receive_wait(*clauses))
        send(me, "both")
        send_chan(sp, 2)
        got.append(await receive_wait(*clauses))  # the channel's clause comes first
        got.append(await receive_wait(*clauses))
        got.append(await receive_timeout(0.05, *clauses))  # nothing: times out
        return got

    assert await run(main) == [("chan", 1), ("mail", "hi"), ("chan", 2), ("mail", "both"), None]


async def test_match_chan_passes_on_a_wakeup_it_did_not_use() -> None:
    """One process waits on channels a and b, another on b alone. Messages on b, then
    a, wake the first (it waits longest) for b's; it takes a's (its first clause), so
    the wakeup for b's message must go on to the second."""

    async def both(ra: Any, rb: Any, out: Any) -> None:
        send_chan(out, await receive_wait(match_chan(ra), match_chan(rb)))

    async def only_b(rb: Any, out: Any) -> None:
        started = time.monotonic()
        got = await receive_chan_timeout(rb, 3)  # a lost wakeup: only at the deadline
        send_chan(out, got if time.monotonic() - started < 2 else "woken too late")

    async def main() -> list[Any]:
        sa, ra = new_chan()
        sb, rb = new_chan()
        out_sp, out_rp = new_chan()
        spawn_local(both, ra, rb, out_sp)
        await asyncio.sleep(0.02)
        spawn_local(only_b, rb, out_sp)
        await asyncio.sleep(0.02)
        send_chan(sb, "b")
        send_chan(sa, "a")
        first = await receive_chan_timeout(out_rp, 5)
        second = await receive_chan_timeout(out_rp, 5)
        return sorted(str(x) for x in (first, second))

    assert await run(main) == ["a", "b"]
