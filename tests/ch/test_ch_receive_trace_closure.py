"""Cloud Haskell's ``Receive``, ``Tracing``, ``Mx`` and ``Closure`` tests.

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
from types import NoneType
from typing import Any

import ch_funcs as ch
import pytest
from ch_support import WAIT, break_connection, down, forward_events, next_events, run

from cloudy import (
    TRACE_KINDS,
    Match,
    NodeId,
    ProcessId,
    ProcessRegistrationException,
    ReceivePort,
    SendPort,
    TraceEvent,
    closure,
    expect,
    get_self_node,
    get_self_pid,
    kill,
    match,
    match_chan,
    match_if,
    new_chan,
    nsend,
    nsend_remote,
    receive_chan,
    receive_chan_timeout,
    receive_timeout,
    receive_wait,
    register,
    reregister,
    send,
    send_chan,
    spawn,
    spawn_local,
    spawn_monitor,
    spawn_monitor_remote,
    start_tracer,
    stop_tracer,
    unregister,
    usend,
    whereis,
)
from cloudy.testing import NodeProcess, free_port

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
