"""The simulator itself: exact replay, and each fault as a user of the runtime sees it.

Every test here runs real cloudy nodes (router, mailboxes, monitors, handshake,
heartbeat) in one process on a virtual clock; times asserted are virtual, so they
are exact: the same on a loaded machine as on an idle one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from cloudy import (
    DiedDisconnect,
    ProcessId,
    ProcessMonitorNotification,
    expect,
    get_self_pid,
    match_any,
    monitor,
    receive_timeout,
    reconnect,
    send,
)
from cloudy.testing.sim import Sim, SimNode
from cloudy.testing.sim.faults import Fault, FaultPlan, PlanError
from cloudy.testing.sim.probe import PERIOD, Numbered, start_probes

HEARTBEAT = 1.0  # the simulator's default heartbeat timeout


async def echo() -> None:
    while True:
        pid, x = await expect(tuple)
        send(pid, ("echo", x))


async def collect(into: list[object]) -> None:
    """Keep every message that arrives, in order (the test reads *into*)."""
    while True:
        into.append(await expect(object))


async def ask(pid: ProcessId, n: int) -> list[int]:
    got = []
    for i in range(n):
        send(pid, (get_self_pid(), i))
        _, x = await expect(tuple)
        got.append(x)
    return got


def two(seed: int = 1) -> tuple[Sim, SimNode, SimNode]:
    sim = Sim(seed)
    return sim, sim.add_node("a"), sim.add_node("b")


def echo_run(seed: int) -> tuple[str, list[int], int]:
    sim, a, b = two(seed)
    with sim:
        pid = sim.spawn(b, echo)
        got = sim.run(a, a.node.run_process(ask, pid, 50))
        sim.run_for(3.0)
        return sim.digest, got, len(sim.world.trace.events)


def test_the_same_seed_gives_the_same_run_and_another_seed_another() -> None:
    first, again, other = echo_run(5), echo_run(5), echo_run(6)
    assert first == again
    assert first[1] == other[1] == list(range(50))  # the same answers...
    assert first[0] != other[0]  # ...by a different schedule (latencies, order)


def test_ten_idle_minutes_of_heartbeats_lose_no_peer() -> None:
    sim, a, b = two()
    with sim:
        pid = sim.spawn(b, echo)
        assert sim.run(a, a.node.run_process(ask, pid, 1)) == [0]
        sim.run_for(600.0)
        assert sim.now >= 600.0
        # no reconnect: the connection of ten minutes ago is still up
        assert sim.run(a, a.node.run_process(ask, pid, 2)) == [0, 1]
        assert not [line for line in sim.world.logs if "lost" in line]


def watcher(pid: ProcessId, into: list[tuple[float, object]]) -> Callable[[], Awaitable[None]]:
    async def body() -> None:
        monitor(pid)
        while True:
            msg = await receive_timeout(30.0, match_any(lambda m: m))
            if msg is None:
                return
            into.append((round(sim_now(), 6), msg))

    return body


_NOW: list[Sim] = []


def sim_now() -> float:
    return _NOW[-1].now


def watched(fault: str) -> tuple[list[tuple[float, object]], float]:
    """A process on *b* watched from *a*; *fault* hits b at 1 s; what a's watcher heard
    in 30 s, with the virtual time of each notification."""
    sim, a, b = two(3)
    _NOW.append(sim)
    heard: list[tuple[float, object]] = []
    with sim:
        pid = sim.spawn(b, echo)
        sim.spawn(a, watcher(pid, heard))
        sim.run_for(1.0)
        at = sim.now
        getattr(sim, fault)(b)
        sim.run_for(30.0)
    return heard, at


def test_a_killed_node_is_noticed_at_once_and_its_process_reported_once() -> None:
    heard, at = watched("crash")
    assert len(heard) == 1
    when, note = heard[0]
    assert isinstance(note, ProcessMonitorNotification)
    assert isinstance(note.reason, DiedDisconnect)
    assert when - at < 0.01  # its kernel closed the connection: no heartbeat needed


def test_a_frozen_node_is_declared_lost_after_the_heartbeat_timeout_and_not_before() -> None:
    heard, at = watched("pause")
    assert len(heard) == 1
    when, note = heard[0]
    assert isinstance(note, ProcessMonitorNotification)
    assert isinstance(note.reason, DiedDisconnect)
    # silent for the timeout, judged once a tick period (timeout / 5)
    assert HEARTBEAT <= when - at <= HEARTBEAT * 1.2 + 0.01


def test_a_node_whose_own_loop_stalled_declares_no_peer_lost() -> None:
    """A long turn (a slow callback, a GC pause) on a, longer than a's own heartbeat
    timeout but not b's: what b sent meanwhile waits unread, and a, awake again, must
    judge b's silence from then on, not take its own lateness for b's."""
    sim = Sim(6)
    a, b = sim.add_node("a"), sim.add_node("b", heartbeat_timeout=5 * HEARTBEAT)
    got: list[object] = []
    with sim:
        sink = sim.spawn(a, collect, got)
        sim.spawn(b, numbered, sink, 200, 0.02)  # 4 s of sending
        sim.run_for(1.0)
        sim.stall(a, 2.5 * HEARTBEAT)
        sim.run_for(6.0)
        stalled = [e for e in map(str, sim.world.trace.events) if "stalled" in e]
        lost = [line for line in sim.world.logs if "declaring it lost" in line]
    assert len(stalled) == 1  # it did stall, once
    assert lost == []
    assert got == list(range(200))  # nothing lost: the connection was never dropped


async def numbered(pid: ProcessId, n: int, every: float) -> None:
    import asyncio

    for i in range(n):
        send(pid, i)
        await asyncio.sleep(every)


def through_a_cut(span: float, *, reconnect_after: bool = False) -> list[object]:
    sim, a, b = two(4)
    got: list[object] = []
    with sim:
        sink = sim.spawn(b, collect, got)
        # 6 s of sending: from before the cut to well after it heals, so that the
        # prefix rule is what keeps the later ones from arriving after a hole
        sim.spawn(a, numbered, sink, 300, 0.02)
        sim.run_for(0.5)
        sim.partition([a], [b])
        sim.run_for(span)
        sim.heal()
        if reconnect_after:
            sim.run_for(0.5)

            async def again() -> None:
                reconnect(sink)
                send(sink, "after")

            sim.run(a, a.node.run_process(again))
        sim.run_for(5.0)
    return got


def test_a_short_cut_delays_messages_and_loses_none() -> None:
    got = through_a_cut(0.5 * HEARTBEAT)
    assert got == list(range(300))


def test_a_long_cut_leaves_a_prefix_never_a_hole_until_reconnect() -> None:
    got = through_a_cut(3 * HEARTBEAT, reconnect_after=True)
    numbers = [x for x in got if isinstance(x, int)]
    assert numbers == list(range(len(numbers)))  # a prefix: no hole, nothing twice
    assert 20 < len(numbers) < 300  # the sends after the loss was noticed were dropped
    assert got[-1] == "after"  # and after reconnect, sends arrive again


def test_a_reset_connection_is_a_lost_peer_and_dialled_again() -> None:
    sim, a, b = two(8)
    with sim:
        pid = sim.spawn(b, echo)
        assert sim.run(a, a.node.run_process(ask, pid, 3)) == [0, 1, 2]
        sim.reset(a, b)
        sim.run_for(0.1)

        async def after_reset() -> list[int]:
            reconnect(pid)
            return await ask(pid, 3)

        assert sim.run(a, a.node.run_process(after_reset)) == [0, 1, 2]
        assert any("reset" in e for e in map(str, sim.world.trace.events))


def test_a_fault_plan_reads_back_as_itself() -> None:
    text = "crash:s2@0.31 restart:s1@0.2+0.5 pause:s1@0.2+1.5 cut:s1/s2,s3@0.3+2 "
    text += "cut1:m/s4@0.1+1 reset:s1/s2@0.4 flip:s1/s3@0.4 truncate:s2/s1@0.1 "
    text += "slow:s1/s2@0.1+0.5=0.02 drift:s1=1.001"
    plan = FaultPlan.parse(text)
    assert str(plan) == text
    assert FaultPlan.parse(str(plan)) == plan
    assert plan.faults[3] == Fault("cut", ("s1",), ("s2", "s3"), 0.3, 2.0)
    assert plan.drift("s1") == 1.001 and plan.drift("s2") == 1.0
    for bad in ("crash", "crash:s1@x", "boom:s1@1", "cut:s1@1+1", "crash:s1/s2@1"):
        with pytest.raises(PlanError):
            FaultPlan.parse(bad)


def test_the_docs_first_test_runs_as_written() -> None:
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text()
    page = page[page.index("## A first test") :]
    code = re.findall(r"```python\n(.*?)```", page, re.S)[0]
    scope: dict[str, object] = {"__name__": "docs_testing_example"}
    exec(compile(code, "docs/testing.md", "exec"), scope)
    test = scope["test_echo_survives_a_short_cut"]
    assert callable(test)
    test()


def test_the_ordering_probes_hear_every_number_in_order_and_say_a_hole() -> None:
    with Sim(2) as sim:
        nodes = [sim.add_node(name) for name in "abcde"]
        probes = start_probes(sim, nodes, 1.0)
        sim.run_for(2.0)
        rounds = round(1.0 / PERIOD)
        # five probes, each sending to the next two: every pair of nodes, one way
        assert abs(probes.delivered - 5 * 2 * rounds) <= 5 * 2
        assert probes.violations == []
        stranger = sim.spawn(nodes[0], collect, [])
        for n in (0, 1, 3, 3):  # a hole, then the same number twice
            sim.run(nodes[0], nodes[0].node.run_process(_send, probes.pids[1], stranger, n))
        sim.run_for(0.5)
    assert probes.violations == [
        f"{probes.pids[1]} got {stranger}'s 3 after a hole (after its 1)",
        f"{probes.pids[1]} got {stranger}'s 3 twice or out of order (after its 3)",
    ]


async def _send(to: ProcessId, sender: ProcessId, n: int) -> None:
    send(to, Numbered(sender, n))
