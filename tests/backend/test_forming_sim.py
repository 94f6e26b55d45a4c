"""Forming a cluster found by DNS, in the simulator: seeded partitions, slow and failing
DNS answers at start, two masters after the same slaves — never a split.

Every schedule runs the real backend (`run_slave`, `run_master`, the DNS watch, the
claims) on simulated nodes; the DNS server is a table the test holds, answering after
a seeded delay and failing at random while the cluster starts. Times are virtual.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from cloudy import (
    CloudyError,
    NodeId,
    ProcessId,
    clock,
    expect,
    get_self_pid,
    match,
    receive_timeout,
    send,
    whereis_remote,
)
from cloudy.backend.claims import Claim, ClaimReply
from cloudy.backend.dns import DnsError, Lookup, Record
from cloudy.backend.localnet import SLAVE_CONTROLLER
from cloudy.backend.simplelocalnet import run_master, run_slave
from cloudy.testing.sim import Sim, SimNode

NAME = "cloudy-slaves.sim"
SLAVES = 3
SCHEDULES = 60  # bounded: each is a fraction of a second of real time


@dataclass
class Zone:
    """The DNS server: the records it gives, slow and unreliable until *settles*."""

    records: list[Record] = field(default_factory=list)
    settles: float = 0.0
    answered: int = 0
    failed: int = 0

    def lookup(self) -> Lookup:
        async def lookup(name: str, port: int) -> list[Record]:
            rng = clock.chance()
            starting = clock.now() < self.settles
            await asyncio.sleep(rng.uniform(0.0, 2.0) if starting else rng.uniform(0.001, 0.02))
            if starting and rng.random() < 0.4:
                self.failed += 1
                raise DnsError(f"{name}: SERVFAIL (simulated)")
            self.answered += 1
            return list(self.records)

        return lookup


@dataclass
class Formed:
    master: str
    start: float
    end: float
    slaves: frozenset[NodeId]


@dataclass
class Outcome:
    formed: list[Formed] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    digest: str = ""


def node(sim: Sim, name: str, zone: Zone) -> SimNode:
    return sim.add_node(name, port=7000, discovery=True, peers_dns=NAME, dns_lookup=zone.lookup())


def holding(out: Outcome, name: str, hold: float) -> Callable[[list[NodeId]], object]:
    async def proc(slaves: list[NodeId]) -> None:
        start = clock.now()
        await asyncio.sleep(hold)  # the run, with the slaves claimed
        out.formed.append(Formed(name, start, clock.now(), frozenset(slaves)))

    return proc


def forming(seed: int) -> Outcome:
    """Two masters and three slaves; partitions and a bad DNS at start; each master
    wants all three slaves."""
    rng = random.Random(seed)
    out = Outcome()
    zone = Zone(settles=rng.uniform(0.0, 4.0))
    sim = Sim(seed)
    with sim:
        slaves = [node(sim, f"s{i}", zone) for i in range(1, SLAVES + 1)]
        masters = [node(sim, f"m{i}", zone) for i in (1, 2)]
        # the headless service names every pod, masters included
        zone.records = [Record(0, 0, n.host, n.port) for n in [*slaves, *masters]]
        cut = [(m, s) for m in masters for s in slaves if rng.random() < 0.3]
        for m, s in cut:
            sim.partition([m], [s])
        for s in slaves:
            s.loop.create_task(run_slave(s.backend))  # type: ignore[arg-type]
        tasks = {}
        for m in masters:
            proc = holding(out, m.name, rng.uniform(1.0, 30.0))
            tasks[m.name] = m.loop.create_task(
                run_master(
                    m.backend,  # type: ignore[arg-type]
                    proc,  # type: ignore[arg-type]
                    slaves=SLAVES,
                    within=20.0,
                    stable_for=rng.choice([0.0, 1.0, 2.0]),
                )
            )
        sim.run_for(rng.uniform(0.5, 5.0))
        sim.heal()
        sim.run_until(lambda: all(t.done() for t in tasks.values()), limit=120.0)
        for name, task in tasks.items():
            error = task.exception()
            if isinstance(error, CloudyError):
                out.failed[name] = str(error)
            elif error is not None:
                raise error
        out.digest = sim.digest
    return out


@pytest.mark.load
def test_two_masters_after_the_same_slaves_never_share_one_at_once() -> None:
    shown_both = 0
    for seed in range(1, SCHEDULES + 1):
        out = forming(seed)
        assert out.formed, f"seed {seed}: no master formed ({out.failed})"
        for f in out.formed:
            assert len(f.slaves) == SLAVES, f"seed {seed}: {f}"
        for a in out.formed:
            for b in out.formed:
                if a is not b and a.slaves & b.slaves:
                    assert a.end <= b.start or b.end <= a.start, f"seed {seed}: {a} and {b}"
        for name, why in out.failed.items():
            # a master that did not form says why: another holds the slaves, or they
            # were ended or gone by the time the other let go
            assert "another master holds" in why or "found" in why, f"seed {seed}: {name} {why}"
        shown_both += len(out.formed) == 2
    # the schedules cover both ends: the second master forming after the first let go,
    # and giving up while the first held the slaves
    assert 0 < shown_both < SCHEDULES


def test_a_forming_schedule_replays_exactly() -> None:
    first, again = forming(7), forming(7)
    assert first.digest == again.digest
    assert first.formed == again.formed and first.failed == again.failed


def test_a_failing_dns_never_forms_a_cluster_of_none() -> None:
    zone = Zone(settles=1e9)  # it never settles: slow answers, 40 % failures
    sim = Sim(3)
    with sim:
        master = node(sim, "m", zone)
        zone.records = []  # and when it answers, it names nobody
        ran: list[list[NodeId]] = []

        async def proc(slaves: list[NodeId]) -> None:
            ran.append(slaves)

        with pytest.raises(CloudyError, match="found 0 of 1 slaves"):
            sim.run(master, run_master(master.backend, proc, within=15.0))  # type: ignore[arg-type]
        assert ran == [] and zone.failed > 0
        # the failures were told, once and then once a minute, not at every poll
        told = [line for line in sim.world.logs if "SERVFAIL" in line]
        assert told and len(told) < zone.failed, sim.world.logs


def test_a_master_that_names_only_itself_does_not_form() -> None:
    zone = Zone()
    sim = Sim(4)
    with sim:
        master = node(sim, "m", zone)
        zone.records = [Record(0, 0, master.host, master.port)]

        async def proc(slaves: list[NodeId]) -> None:
            raise AssertionError(f"formed with {slaves}")

        with pytest.raises(CloudyError, match="found 0 of 1 slaves"):
            sim.run(master, run_master(master.backend, proc, within=5.0))  # type: ignore[arg-type]
        assert zone.answered > 0


def test_a_slave_restarted_on_its_address_is_a_new_node_free_of_old_claims() -> None:
    zone = Zone()
    sim = Sim(5)
    with sim:
        slave, a, b = node(sim, "s", zone), node(sim, "a", zone), node(sim, "b", zone)
        zone.records = [Record(0, 0, slave.host, slave.port)]
        sim.run_for(0.1)
        slave.loop.create_task(run_slave(slave.backend))  # type: ignore[arg-type]
        sim.run_for(0.5)
        controller = sim.run(a, a.node.run_process(lambda: whereis_controller(slave)))
        replies: list[ClaimReply | None] = []
        sim.spawn(a, claim_and_hold, controller, replies)  # a master: it lives on
        sim.run_for(1.0)
        assert replies and replies[0] is not None and replies[0].granted
        refused = sim.run(b, b.node.run_process(lambda: claim(controller)))
        assert refused is not None and not refused.granted and refused.holder is not None
        assert refused.holder.node == a.node_id
        sim.restart(slave)  # the same host and port: a new incarnation, no claims
        sim.run_for(1.0)
        slave.loop.create_task(run_slave(slave.backend))  # type: ignore[arg-type]
        sim.run_for(0.5)
        new = sim.run(b, b.node.run_process(lambda: whereis_controller(slave)))
        assert new.node == controller.node and new.creation != controller.creation
        regranted = sim.run(b, b.node.run_process(lambda: claim(new)))
        assert regranted is not None and regranted.granted
        # the old controller's pid names no process of the new node: a claim sent to it
        # is refused by the node, never granted by the new one
        assert sim.run(a, a.node.run_process(lambda: claim(controller, 2.0))) is None


async def whereis_controller(slave: SimNode) -> ProcessId:
    pid = await whereis_remote(slave.node_id, SLAVE_CONTROLLER)
    assert pid is not None
    return pid


async def claim_and_hold(controller: ProcessId, into: list[ClaimReply | None]) -> None:
    into.append(await claim(controller))
    await expect(str)  # nobody sends it one


async def claim(controller: ProcessId, seconds: float = 5.0) -> ClaimReply | None:
    send(controller, Claim(get_self_pid()))
    return await receive_timeout(seconds, match(ClaimReply))
