"""A node restarted on the same host and port is a new incarnation: a pid held from
before the restart reaches nothing there, even the new process with the same number.

The first tests run the node in a child OS process, end it by its PID (SIGKILL, as a
crash would) and start a new one on the same port, as ``cloudy slave --heart`` does;
the last ones run the same story in the simulator, where the creation is decided by
the seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

import incarnation_funcs as F
import pytest

from cloudy import (
    DiedUnknownId,
    LocalNode,
    NodeId,
    NodeMonitorNotification,
    ProcessId,
    ProcessLinkException,
    ProcessMonitorNotification,
    call,
    closure,
    expect,
    expect_timeout,
    get_node_stats,
    get_self_pid,
    kill,
    link,
    monitor,
    monitor_node,
    send,
    spawn,
)
from cloudy.identity import UNKNOWN_CREATION
from cloudy.testing import NodeProcess, free_port
from cloudy.testing.sim import Sim, SimNode

COOKIE = "incarnation-tests"
MODULE = "incarnation_funcs"
# Generous: an answer that is due at once must arrive well within it.
WAIT = 10.0
# How long a message that should not arrive is given to arrive anyway, after a later
# message on the same path has (so that it would have come first).
QUIET = 0.5


class Restarts:
    """Nodes in child OS processes, one after the other on the same port; each ended
    by its PID when the test ends, whatever happened."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self.port = free_port()
        self.node_id = NodeId("127.0.0.1", self.port)
        self._stack = stack
        self.current: NodeProcess | None = None

    async def start(self) -> NodeProcess:
        node = NodeProcess(MODULE, cookie=COOKIE, port=self.port)
        self._stack.callback(node.stop)
        await asyncio.to_thread(node.__enter__)
        self.current = node
        return node

    async def crash(self) -> None:
        """SIGKILL the current node by its PID and reap it."""
        node = self.current
        assert node is not None and node.proc is not None
        node.signal(signal.SIGKILL)
        await asyncio.to_thread(node.proc.wait, WAIT)


@pytest.fixture
def nodes() -> Iterator[Restarts]:
    with contextlib.ExitStack() as stack:
        yield Restarts(stack)


async def first_life(node: NodeId) -> ProcessId:
    """An echo process on *node*, checked to answer; its pid."""
    pid = await spawn(node, closure(F.echo_to, get_self_pid()))
    send(pid, "before")
    assert await expect_timeout(WAIT, F.Heard) == F.Heard(pid, "before")
    return pid


async def notice_loss(node: NodeId) -> None:
    monitor_node(node)
    assert await expect_timeout(WAIT, NodeMonitorNotification) is not None


async def restarted(here: LocalNode, nodes: Restarts) -> tuple[ProcessId, NodeProcess]:
    """Start a node, get a pid there, crash it and start it again on the same port
    (this node having noticed the loss): the old pid, and the new node."""
    await nodes.start()
    old = await here.run_process(first_life, nodes.node_id)
    assert old.creation != UNKNOWN_CREATION
    lost = asyncio.ensure_future(here.run_process(notice_loss, nodes.node_id))
    await asyncio.sleep(0.2)  # the watcher is in place
    await nodes.crash()
    await asyncio.wait_for(lost, WAIT)
    return old, await nodes.start()


async def test_a_pid_from_before_a_restart_reaches_nothing_on_the_new_node(
    nodes: Restarts,
) -> None:
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE) as here:
        old, again = await restarted(here, nodes)

        async def second_life() -> ProcessId:
            fresh = await spawn(nodes.node_id, closure(F.echo_to, get_self_pid()))
            # the new process has the old one's address and number: only the
            # creation tells them apart
            assert (fresh.node, fresh.lid) == (old.node, old.lid)
            assert fresh.creation not in (old.creation, UNKNOWN_CREATION)
            assert fresh != old and hash(fresh) != hash(old)
            assert str(fresh) == str(old)  # printed as Cloud Haskell prints it
            send(old, "stale")
            send(old, "stale again")
            kill(old, "meant for the old process")  # must not end the new one
            send(fresh, "fresh")  # the same path, after them: they would be heard first
            assert await expect_timeout(WAIT, F.Heard) == F.Heard(fresh, "fresh")
            assert await expect_timeout(QUIET, F.Heard) is None
            # a process of the new node sending to the old pid (handed to it) is refused too
            await call(nodes.node_id, closure(F.send_here, old, "stale, from its own node"))
            await call(nodes.node_id, closure(F.send_here, fresh, "fresh, from its own node"))
            heard = await expect_timeout(WAIT, F.Heard)
            assert heard == F.Heard(fresh, "fresh, from its own node")
            assert await expect_timeout(QUIET, F.Heard) is None
            return fresh

        fresh = await here.run_process(second_life)
        log = await asyncio.to_thread(
            again.wait_for_log,
            f"refused a message for {old} from {here.node_id}: addressed to creation "
            f"{old.creation} of {nodes.node_id}, which is creation {fresh.creation} "
            "(the node restarted since, or it is not of this node)",
        )
        assert log.count(f"refused a message for {old} from {here.node_id}") == 1  # once
        assert f"refused an exit signal for {old} from {here.node_id}" in log
        own = f"refused a message for {old} from {nodes.node_id}"
        await asyncio.to_thread(again.wait_for_log, own)

        async def stats() -> tuple[int, dict[str, int]]:
            s = await get_node_stats(nodes.node_id)
            return s.creation, s.frames_refused

        creation, refused = await here.run_process(stats)
        assert creation == fresh.creation
        assert refused["stale pid"] == 4  # two messages, an exit signal, one local send


async def test_monitoring_or_linking_to_a_pid_from_before_a_restart_says_it_is_unknown(
    nodes: Restarts,
) -> None:
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE) as here:
        old, again = await restarted(here, nodes)

        async def watch() -> ProcessId:
            fresh = await spawn(nodes.node_id, closure(F.echo_to, get_self_pid()))
            assert fresh.lid == old.lid
            ref = monitor(old)
            note = await expect_timeout(WAIT, ProcessMonitorNotification)
            assert note == ProcessMonitorNotification(ref, old, DiedUnknownId())
            # the new process's own pid works: monitored, it is alive; ended, it says so
            ref = monitor(fresh)
            assert await expect_timeout(QUIET, ProcessMonitorNotification) is None
            send(fresh, "alive?")
            assert await expect_timeout(WAIT, F.Heard) == F.Heard(fresh, "alive?")
            kill(fresh, "the end")
            note = await expect_timeout(WAIT, ProcessMonitorNotification)
            assert note is not None and (note.ref, note.pid) == (ref, fresh)
            assert not isinstance(note.reason, DiedUnknownId)
            return fresh

        async def linked() -> ProcessLinkException:
            link(old)
            try:
                await expect_timeout(WAIT, F.Heard)
            except ProcessLinkException as e:
                return e
            raise AssertionError("no exit signal from a link to an unknown process")

        await here.run_process(watch)
        e = await here.run_process(linked)
        assert e.pid == old and isinstance(e.reason, DiedUnknownId)
        log = await asyncio.to_thread(
            again.wait_for_log, f"refused a monitor (told: DiedUnknownId) for {old}"
        )
        assert f"refused a link (told: DiedUnknownId) for {old}" in log


# --- in the simulator ------------------------------------------------------------------


async def echo() -> None:
    while True:
        reply_to, x = await expect(tuple)
        send(reply_to, (get_self_pid(), x))


async def ask(pid: ProcessId, x: object) -> tuple[ProcessId, object] | None:
    """Send *x* to echo process *pid*: its answer, or None."""
    send(pid, (get_self_pid(), x))
    return await expect_timeout(1.0, tuple)


def creations(seed: int) -> tuple[int, int, int]:
    """The creations of two nodes of a cluster of *seed*, and of the second's restart."""
    with Sim(seed) as sim:
        a, b = sim.add_node("a"), sim.add_node("b")
        first = b.node.creation
        restart(sim, b)
        return a.node.creation, first, b.node.creation


def restart(sim: Sim, n: SimNode) -> None:
    before = n.node
    sim.restart(n)
    sim.run_until(lambda: n.node is not before and not n.crashed, limit=10.0)


def test_the_seed_decides_a_node_s_creation_and_a_restart_draws_another() -> None:
    one = creations(3)
    assert creations(3) == one
    assert creations(4) != one
    assert len(set(one)) == 3 and UNKNOWN_CREATION not in one
    assert all(0 < c < 2**32 for c in one)


def test_the_simulator_refuses_a_pid_from_before_a_restart() -> None:
    with Sim(11) as sim:
        a, b = sim.add_node("a"), sim.add_node("b")
        old = sim.spawn(b, echo)
        assert sim.run(a, a.node.run_process(ask, old, 1)) == (old, 1)
        restart(sim, b)
        sim.run_for(3.0)  # a hears of the loss
        fresh = sim.spawn(b, echo)
        assert (fresh.node, fresh.lid) == (old.node, old.lid)
        assert fresh.creation == b.node.creation != old.creation
        assert sim.run(a, a.node.run_process(ask, old, 2)) is None
        assert sim.run(a, a.node.run_process(ask, fresh, 3)) == (fresh, 3)
        refusals = [line for line in sim.world.logs if "refused a message" in line]
        assert len(refusals) == 1 and f"for {old} from {a.node_id}" in refusals[0]
        assert f"which is creation {fresh.creation}" in refusals[0]
