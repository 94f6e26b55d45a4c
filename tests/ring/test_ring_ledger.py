"""The ring's books under failure, without sockets: a token ring (one or more
tokens) of `Ledger`s over
FIFO channels, every delivery order hypothesis picks, a member crashing mid-broadcast
(each of its channels losing what was not yet written), the survivors relaying its
last messages, and a new incarnation rejoining passive from their catch-ups.

What a user checks at the end: every live member has the same prefix, that prefix
holds every message any live member holds (nothing is stuck behind a message only
some had), and every value in it is the one its index defines.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cloudy.ring.ledger import Ledger
from cloudy.ring.protocol import Ack, CatchUp, CaughtUp, Members, Msg, Msgs, Relay
from cloudy.ring.random import m

SEED = 1


@dataclass
class Member:
    books: Ledger
    alive: set[int]
    passive: set[int]
    known: list[int]  # the incarnation of each position it sends to (its pids)
    sent: tuple[tuple[int, ...], int] = ((), 0)

    @property
    def senders(self) -> set[int]:
        return self.alive - self.passive

    def left(self) -> int:
        me, n = self.books.me, self.books.n
        if me not in self.senders:
            return -1
        return next(p % n for p in range(me - 1, me - n - 1, -1) if p % n in self.senders)


@dataclass
class Ring:
    n: int
    budget: int  # the highest index that may be generated (then GRACE)
    tokens: int = 1
    members: dict[int, Member] = field(default_factory=dict)
    chans: dict[tuple[int, int], deque[Any]] = field(default_factory=dict)
    passive: set[int] = field(default_factory=set)  # the master's view
    incarnation: list[int] = field(default_factory=list)  # of each position (its pid)
    grace: bool = False  # generating has ended: members say their confirmations

    def __post_init__(self) -> None:
        everyone = set(range(self.n))
        self.incarnation = [0] * self.n
        for p in range(self.n):
            self.members[p] = Member(
                Ledger(self.n, p, self.tokens), set(everyone), set(), [0] * self.n
            )
        for a in range(-1, self.n):  # -1: the master
            for b in range(self.n):
                self.chans[(a, b)] = deque()

    def send(self, frm: int, to: int, msg: Any) -> None:
        """*msg* to the process *frm* knows for position *to*: lost if that one died."""
        known = self.incarnation if frm < 0 else self.members[frm].known
        if to in self.members and known[to] == self.incarnation[to]:
            self.chans[(frm, to)].append(msg)

    def generate(self, p: int, indices: list[int]) -> None:
        """*p* broadcasts *indices*: one `Msg`, or one `Msgs` for several."""
        me = self.members[p]
        if any(index > self.budget for index in indices):
            self.grace = True
        indices = [index for index in indices if index <= self.budget]
        if not indices:
            return
        books = me.books
        recv_upto, approved = list(books.recv_upto), books.my_approved
        values = [m(SEED, index) for index in indices]
        seqs = [books.generate(index, value) for index, value in zip(indices, values, strict=True)]
        msg: Msg | Msgs = (
            Msg(indices[0], values[0], p, seqs[0], recv_upto, approved)
            if len(indices) == 1
            else Msgs(p, seqs[0], indices, values, recv_upto, approved)
        )
        for q in sorted(me.alive, key=lambda q: (q - p) % self.n or self.n):
            self.send(p, q, msg)
        me.sent = (tuple(books.recv_upto), books.my_approved)

    def deliver(self, frm: int, to: int) -> None:
        msg = self.chans[(frm, to)].popleft()
        me = self.members[to]
        books = me.books
        forward: list[int] = []
        changed = False
        answered: Msg | Msgs | None = None  # from the left: answered, then taken (as ring/slave)
        if type(msg) in (Msg, Msgs):
            if msg.frm not in me.senders:
                return
            indices = [msg.index] if type(msg) is Msg else msg.indices
            first = msg.seq if type(msg) is Msg else msg.first
            if msg.frm == me.left():
                forward = [
                    i + books.tokens
                    for k, i in enumerate(indices, first)
                    if books.answers(msg.frm, i, k)
                ]
                answered = msg
            else:
                books.take_broadcasts([msg])
        elif type(msg) is Ack:
            if msg.frm in me.alive:
                books.take_confirms(msg.frm, msg.confirms, msg.approved)
        elif type(msg) is Relay:
            books.take_relay(msg)
            changed = True
        elif type(msg) in (CatchUp, CaughtUp):
            books.take_catch_up(msg)
            if type(msg) is CaughtUp:  # its sender counts us in now: tell it
                me.sent = ((), 0)
        elif type(msg) is Members:
            gone = me.senders - set(msg.alive)
            joined = set(msg.alive) - me.alive
            me.alive, me.passive = set(msg.alive), set(msg.passive)
            me.known = list(self.incarnation)  # the pids in `Members.peers`
            for d in sorted(gone):
                for q in me.alive - {to}:
                    self.send(to, q, books.relay(d))
            for j in sorted(joined - {to}):
                for part in books.catch_up():
                    self.send(to, j, part)
            changed = bool(gone)
            books.changed = True
        sending = bool(forward) and not changed
        if answered is not None and not sending:
            books.take_broadcasts([answered])
        if changed:
            books.settle(me.alive, me.senders)
            forward += [i for i in books.owed(me.senders) if i not in forward]
        if forward:
            self.generate(to, forward)
        if answered is not None and sending:
            books.take_broadcasts([answered])
        books.settle(me.alive, me.senders)
        if self.grace or to in me.passive:
            self.ack(to)

    def ack(self, p: int) -> None:
        me = self.members[p]
        state = (tuple(me.books.recv_upto), me.books.my_approved)
        if state != me.sent:
            me.sent = state
            for q in me.alive - {p}:
                self.send(p, q, Ack(p, list(me.books.recv_upto), me.books.my_approved))

    def crash(self, d: int, kept: list[int]) -> None:
        """*d* dies; of what it queued to each member only the first *kept* arrive."""
        del self.members[d]
        self.passive.discard(d)
        for i, to in enumerate(range(self.n)):
            chan = self.chans[(d, to)]
            while len(chan) > kept[i % len(kept)]:
                chan.pop()
            self.chans[(to, d)].clear()
        self.tell()

    def rejoin(self, d: int) -> None:
        self.passive.add(d)
        self.incarnation[d] += 1
        for (_, to), chan in self.chans.items():
            if to == d:
                chan.clear()  # sent to its former self
        alive = set(self.members) | {d}
        books = Ledger(self.n, d, self.tokens)
        self.members[d] = Member(books, alive, set(self.passive), list(self.incarnation))
        self.tell()

    def tell(self) -> None:
        """The master's `Members` to everyone (its view: who is there now)."""
        members = Members(sorted(self.members), sorted(self.passive))
        for p in self.members:
            self.send(-1, p, members)

    def busy(self) -> list[tuple[int, int]]:
        return [k for k, chan in self.chans.items() if chan]


def run(
    n: int,
    budget: int,
    seed: int,
    crash_at: int,
    victim: int,
    kept: list[int],
    rejoin: int | None,
    tokens: int = 1,
) -> Ring:
    """One run: deliveries in the order *seed* picks; *victim* crashes after *crash_at*
    deliveries (keeping *kept* of what it queued to each member) and, if *rejoin* is
    not None, comes back that many deliveries later."""
    pick = random.Random(seed)
    ring = Ring(n, budget, tokens)
    for p in range(min(n, tokens)):  # the master's kicks: token c starts at slave c % n
        ring.generate(p, [c + 1 for c in range(p, tokens, n)])
    step = 0
    crashed = rejoined = False
    while busy := ring.busy():
        if step == crash_at and not crashed:
            crashed = True
            ring.crash(victim % n, kept)
            continue
        if crashed and not rejoined and rejoin is not None and step >= crash_at + rejoin:
            rejoined = True
            ring.rejoin(victim % n)
            continue
        frm, to = pick.choice(busy)
        ring.deliver(frm, to)
        step += 1
        if not ring.busy():  # quiet: GRACE, whose Acks settle what is left
            ring.grace = True
            for p in list(ring.members):
                ring.ack(p)
    return ring


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(3, 5),
    budget=st.integers(5, 40),
    seed=st.integers(0, 2**32),
    crash_at=st.integers(0, 100),
    victim=st.integers(0, 4),
    kept=st.lists(st.integers(0, 2), min_size=5, max_size=5),
    rejoin=st.none() | st.integers(0, 60),
    tokens=st.integers(1, 4),
)
def test_after_a_crash_and_a_rejoin_every_member_ends_with_the_same_full_prefix(
    n: int,
    budget: int,
    seed: int,
    crash_at: int,
    victim: int,
    kept: list[int],
    rejoin: int | None,
    tokens: int,
) -> None:
    ring = run(n, budget, seed, crash_at, victim, kept, rejoin, tokens)
    live = ring.members.values()
    prefixes = {mb.books.prefix for mb in live}
    held = max(max((i for i in mb.books.values), default=0) for mb in live)
    assert prefixes == {held}, (prefixes, held)
    for mb in live:
        assert all(mb.books.values[i] == m(SEED, i) for i in range(1, held + 1))
    assert held >= min(budget, 2)  # the ring went on
    # every token went on to the end: nothing lost, none doubled
    for mb in live:
        if mb.books.me in mb.passive:
            continue  # it carries no token
        ends = sorted(top for top in mb.books.top)
        assert ends == list(range(budget - tokens + 1, budget + 1)), (ends, budget)
