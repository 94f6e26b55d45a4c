"""The stream model: every slave generates all the time, many messages to a frame.

Slave k of n generates the indices k+1, k+1+n, k+1+2n, … — its j-th message is
index k+1+(j-1)n — and broadcasts them in `Batch`es of up to `BATCH` values. Each
message is still its own: an index and a value, confirmed by every recipient
before its sender approves it; a batch only shares the envelope. Since one
sender's messages arrive in order, "I hold your messages 1..x" is one integer per
sender, and so is "my messages 1..y are approved", as in the ring; they ride on
every batch and, when a slave has nothing to send, on an `Ack`.

A slave may run at most *window* messages ahead of what it has approved, so the
grace period can always drain. Index i is approved here once its sender approved
its number; the prefix is the smallest over the senders of the last index before
the first unapproved one of each. Values are kept in one array per sender (8
bytes a value), and the result interleaves them back into index order and adds
left to right, exactly as `sum_in_order` does.

The phases, the master's messages and the cut are the shared `SlaveRun`'s. A slave
that dies leaves its share of the indices: the survivors approve for it what all
of them hold, so the run still agrees, on a count that stops near where it died
(the model does not hand its indices to another slave, and a slave that comes back
does not rejoin a stream run).
"""

from __future__ import annotations

from array import array

from .. import (
    Message,
    ProcessExitException,
    ProcessId,
    get_self_pid,
    receive_all,
    remotable,
    send,
    send_many,
)
from .approvals import Approvals
from .protocol import Ack, Members, PhaseName, Relink, Setup
from .random import m
from .run import SlaveRun, join_run

__all__ = ["BATCH", "DEFAULT_WINDOW", "Batch", "StreamBooks", "stream_slave"]

SEND = PhaseName.SEND
# Values per batch at most, and how far a slave may run ahead of its approvals.
BATCH = 4096
DEFAULT_WINDOW = 65536


class Batch(Message):
    """*frm*'s messages numbered *first*, *first* + 1, …, one value each; with its
    confirmations and approval as in `Ack`."""

    frm: int
    first: int
    values: list[float]
    confirms: list[int]
    approved: int


class _Go(Message):
    """To itself: the window has room, go on generating."""


class StreamBooks(Approvals):
    """One slave's books in the stream model (sans-IO)."""

    def __init__(self, n: int, me: int, window: int) -> None:
        super().__init__(n, me)
        self.window = window
        self.vals = [array("d") for _ in range(n)]  # by sender, in its order
        self.gap = [False] * n
        self.prefix = 0
        self.generated = 0  # the highest index we sent
        self.seen = 0  # the highest index we hold
        self.lost_after: list[int] = []
        self.ahead = 0  # the most we ran ahead of our approvals (the window held?)

    def recv_upto(self) -> list[int]:
        return [len(a) for a in self.vals]

    def take_batch(self, b: Batch) -> None:
        frm, arr = b.frm, self.vals[b.frm]
        have = len(arr)
        if b.first == have + 1 and not self.gap[frm]:
            arr.extend(b.values)
        elif b.first <= have and not self.gap[frm]:  # partly held already
            arr.extend(b.values[have + 1 - b.first :])
        elif not self.gap[frm]:
            self.gap[frm] = True
            self.lost_after.append(frm)
        last = frm + 1 + (len(arr) - 1) * self.n
        if last > self.seen:
            self.seen = last
        self.take_confirms(frm, b.confirms, b.approved)

    def settle(self, recipients: set[int], senders: set[int]) -> None:
        n = self.n
        self.approve(self.recv_upto(), recipients, senders)
        if self.changed:
            self.changed = False
            vals, approved = self.vals, self.approved_from
            self.prefix = min(p + min(approved[p], len(vals[p])) * n for p in range(n))

    def room(self, senders: set[int]) -> int:
        """How many messages we may generate now: not more than *window* ahead of
        our approvals, nor more than two batches ahead of the slowest sender we
        hear (the prefix can only grow as fast as the slowest: more is waste)."""
        mine = len(self.vals[self.me])
        room = self.window - (mine - self.my_approved)
        slowest = min((len(self.vals[p]) for p in senders if p != self.me), default=None)
        if slowest is not None:
            room = min(room, slowest + 2 * BATCH - mine)
        return room

    def generate(self, count: int, seed: int) -> tuple[int, list[float]]:
        """Our next *count* messages: the number of the first, and their values."""
        n, mine = self.n, self.vals[self.me]
        first = len(mine) + 1
        index = self.me + 1 + (first - 1) * n
        values = [m(seed, index + k * n) for k in range(count)]
        mine.extend(values)
        self.generated = index + (count - 1) * n
        self.ahead = max(self.ahead, len(mine) - self.my_approved)
        return first, values

    def missing(self, count: int) -> list[int]:
        """The indices of 1..*count* we do not hold."""
        n = self.n
        return sorted(
            p + 1 + j * n
            for p in range(n)
            for j in range(len(self.vals[p]), len(range(p, count, n)))
        )

    def value_of(self, index: int) -> float | None:
        p, j = (index - 1) % self.n, (index - 1) // self.n
        return self.vals[p][j] if j < len(self.vals[p]) else None

    def store(self, indices: list[int], values: list[float]) -> None:
        """Messages fetched from another slave (in index order: each sender's next)."""
        for i, v in sorted(zip(indices, values, strict=True)):
            p, j = (i - 1) % self.n, (i - 1) // self.n
            if j == len(self.vals[p]):
                self.vals[p].append(v)

    def total(self, count: int) -> float:
        """``1*m_1 + 2*m_2 + ... + count*m_count``, added left to right (as
        `sum_in_order`), over the values we hold."""
        merged = array("d", bytes(8 * count))
        for p in range(self.n):
            merged[p :: self.n] = self.vals[p][: len(range(p, count, self.n))]
        total = 0.0
        for i, v in enumerate(merged, 1):
            total += i * v
        return total


@remotable
async def stream_slave(master: ProcessId, position: int) -> None:
    """A stream slave for *position*: says `Hello` to *master*, waits for its `Setup`,
    then follows it through the phases."""
    setup = await join_run(master, position)
    if setup is not None:
        await _run(setup)


async def _run(setup: Setup) -> None:
    n, me, seed = len(setup.peers), setup.position, setup.seed
    books = StreamBooks(n, me, setup.window or DEFAULT_WINDOW)
    run = SlaveRun(setup, books)
    me_pid = get_self_pid()
    others = [run.peers[p] for p in sorted(run.alive) if p != me]
    run.ready("stream")
    sent_state: tuple[tuple[int, ...], int] = ((), 0)
    go = False  # a `_Go` is on its way to us
    try:
        while True:
            for msg in await receive_all():
                t = type(msg)
                if t is Batch:
                    if msg.frm in run.senders:
                        books.take_batch(msg)
                elif t is Ack:
                    if msg.frm in run.alive:
                        books.take_confirms(msg.frm, msg.confirms, msg.approved)
                elif t is _Go:
                    go = False
                elif t is Relink:  # a broken connection to a live member: send again
                    if run.links.relink(msg, run.peers, run.alive):
                        to, first = run.peers[msg.position], books.confirmed_by[msg.position] + 1
                        if me in run.senders and first <= len(books.vals[me]):
                            values = list(books.vals[me][first - 1 :])
                            send(to, Batch(me, first, values, books.recv_upto(), books.my_approved))
                        send(to, Ack(me, books.recv_upto(), books.my_approved))
                elif t is Members:
                    run.members(msg)
                    others = [run.peers[p] for p in sorted(run.alive) if p != me]
                    books.changed = True
                else:
                    run.control(msg)
                    if run.ended:
                        return

            if await run.end_of_batch(books.total):
                return

            books.settle(run.alive, run.senders)
            recv_upto = books.recv_upto()
            room = books.room(run.senders) if run.phase is SEND else 0
            if room > 0:
                first, values = books.generate(min(room, BATCH), seed)
                send_many(others, Batch(me, first, values, recv_upto, books.my_approved))
                sent_state = (tuple(recv_upto), books.my_approved)
                if not go:  # go on at once, after what is waiting
                    send(me_pid, _Go())
                    go = True
            else:
                state = (tuple(recv_upto), books.my_approved)
                if state != sent_state and others:
                    sent_state = state
                    send_many(others, Ack(me, recv_upto, books.my_approved))
    except ProcessExitException as e:
        run.ended_by(e)
    finally:
        run.last_word()
