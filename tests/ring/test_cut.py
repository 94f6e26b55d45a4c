"""The cut's agreement (single-decree Paxos), without sockets: whatever the network
and the slaves do, no two slaves decide different counts."""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudy.ring.cut import Accept, Accepted, Agreement, Decided, Prepare, Vote


@dataclass
class Cluster:
    """n slaves and a network that may lose, delay, duplicate and reorder."""

    n: int
    slaves: list[Agreement] = field(init=False)
    flight: list[tuple[int, Vote]] = field(default_factory=list)
    crashed: set[int] = field(default_factory=set)
    proposed: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.slaves = [Agreement(k, self.n) for k in range(self.n)]

    def send(self, votes: list[Vote]) -> None:
        for vote in votes:
            self.flight.extend((to, vote) for to in range(self.n))

    def propose(self, k: int, value: int) -> None:
        if k not in self.crashed:
            self.proposed.add(value)
            self.send(self.slaves[k].propose(value))

    def deliver(self, i: int, keep: bool = False) -> None:
        to, vote = self.flight[i] if keep else self.flight.pop(i)
        if to not in self.crashed:
            self.send(self.slaves[to].receive(vote))

    def run_to_quiet(self, limit: int = 10_000) -> None:
        while self.flight and limit:
            self.deliver(0)
            limit -= 1

    def decisions(self) -> set[int]:
        return {s.decided for s in self.slaves if s.decided is not None}


ACTIONS = ["deliver", "deliver", "deliver", "dup", "drop", "propose", "propose", "crash"]


@settings(max_examples=150, deadline=None)
@given(st.integers(3, 5), st.data())
def test_no_two_slaves_ever_decide_different_counts(n: int, data: st.DataObject) -> None:
    cluster = Cluster(n)
    for _ in range(data.draw(st.integers(1, 200))):
        action = data.draw(
            st.sampled_from(["deliver", "deliver", "dup", "drop", "propose", "crash"])
        )
        if action == "propose":
            cluster.propose(data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, 9)))
        elif action == "crash":
            if len(cluster.crashed) < n:
                cluster.crashed.add(data.draw(st.integers(0, n - 1)))
        elif cluster.flight:
            i = data.draw(st.integers(0, len(cluster.flight) - 1))
            if action == "drop":
                cluster.flight.pop(i)
            else:
                cluster.deliver(i, keep=action == "dup")
        decisions = cluster.decisions()
        assert len(decisions) <= 1, decisions
        assert decisions <= cluster.proposed
    # let everything still in flight arrive: still one decision at most
    cluster.run_to_quiet()
    assert len(cluster.decisions()) <= 1


def simulate(seed: int, n: int) -> tuple[set[int], set[int]]:
    """One run on a network of random delays (heavy-tailed), losses, duplicates and
    crashes, with slaves proposing their own counts at random times and again on a
    timeout: what was decided, and what was proposed."""
    rng = random.Random(seed)
    slaves = [Agreement(k, n) for k in range(n)]
    crashed: set[int] = set()
    proposed: set[int] = set()
    queue: list[tuple[float, int, int, Vote | None]] = []  # (time, order, to, vote)
    order = itertools.count()

    def send(now: float, votes: list[Vote]) -> None:
        for vote in votes:
            for to in range(n):
                if rng.random() < 0.15:
                    continue  # lost
                for _ in range(2 if rng.random() < 0.1 else 1):  # or duplicated
                    delay = rng.expovariate(1.0) * (20 if rng.random() < 0.2 else 1)
                    heapq.heappush(queue, (now + delay, next(order), to, vote))

    for k in range(n):  # each slave proposes at a random time (None: a timer)
        heapq.heappush(queue, (rng.uniform(0, 5), next(order), k, None))
    while queue:
        now, _, to, vote = heapq.heappop(queue)
        if now > 200:
            break
        if to in crashed:
            continue
        if rng.random() < 0.01 and len(crashed) < n - 1:
            crashed.add(to)
            continue
        if vote is None:  # a timer: propose (again) unless decided
            if slaves[to].decided is None:
                value = rng.randrange(100)
                proposed.add(value)
                send(now, slaves[to].propose(value))
                heapq.heappush(queue, (now + rng.uniform(5, 15), next(order), to, None))
            continue
        send(now, slaves[to].receive(vote))
    return {s.decided for s in slaves if s.decided is not None}, proposed


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.integers(3, 5))
def test_no_two_slaves_decide_different_counts_on_a_hostile_network(seed: int, n: int) -> None:
    for k in range(10):
        decided, proposed = simulate(seed + k, n)
        assert len(decided) <= 1, decided
        assert decided <= proposed


def test_one_proposer_and_a_quiet_network_decide_its_count_everywhere() -> None:
    cluster = Cluster(5)
    cluster.propose(2, 1234)
    cluster.run_to_quiet()
    assert [s.decided for s in cluster.slaves] == [1234] * 5


def test_a_count_a_majority_accepted_wins_over_a_later_proposal() -> None:
    cluster = Cluster(3)
    cluster.propose(0, 10)
    # slave 0's Prepare reaches everyone, their Promises come back, and its Accept
    # reaches only slaves 0 and 1 (a majority) before slave 0 crashes
    for _ in range(3):
        cluster.deliver(0)
    promises = [i for i, (to, _) in enumerate(cluster.flight) if to == 0]
    for _ in promises:
        cluster.deliver(next(i for i, (to, _) in enumerate(cluster.flight) if to == 0))
    accepts = [(to, v) for to, v in cluster.flight if isinstance(v, Accept)]
    assert accepts and all(v.value == 10 for _, v in accepts)
    cluster.flight = [
        (to, v) for to, v in cluster.flight if not (isinstance(v, Accept) and to == 2)
    ]
    for to in (0, 1):
        i = next(i for i, (t, v) in enumerate(cluster.flight) if t == to and isinstance(v, Accept))
        cluster.deliver(i)
    cluster.crashed.add(0)
    # and every Accepted is lost: nobody learned that 10 was chosen
    cluster.flight = [(t, v) for t, v in cluster.flight if t != 0 and not isinstance(v, Accepted)]
    # slave 2 never saw the Accept; it proposes 99 — and must decide 10
    cluster.propose(2, 99)
    cluster.run_to_quiet()
    assert cluster.slaves[1].decided == 10 and cluster.slaves[2].decided == 10


def test_a_minority_decides_nothing() -> None:
    cluster = Cluster(5)
    cluster.crashed |= {2, 3, 4}  # or cut off: they never answer
    cluster.propose(0, 7)
    cluster.run_to_quiet()
    assert cluster.decisions() == set()


def test_a_decided_slave_answers_anything_with_the_decision() -> None:
    cluster = Cluster(3)
    cluster.propose(1, 5)
    cluster.run_to_quiet()
    assert cluster.slaves[0].receive(Prepare(9, 2)) == [Decided(5)]
    assert cluster.slaves[0].propose(6) == [Decided(5)]


def test_a_position_outside_the_ring_is_refused() -> None:
    with pytest.raises(ValueError, match="not in a ring of 3"):
        Agreement(3, 3)
