"""The ring process: one per slave node, spawned by the master through the remote table.

Theory of operation
-------------------
The process owns its mailbox loop: each turn it takes *every* message waiting
(`receive_all`: peers' messages, confirmations, the master's phase changes),
updates its books (`Ledger`), and only then sends — at most one broadcast, or one
`Ack`, each encoded once for all peers (`send_many`) — so receiving is always
preferred over sending and nothing starves. There is no task switch per message:
a turn that finds messages waiting yields to the event loop once and goes on;
only an empty mailbox makes it wait.

Membership: *alive* are the positions that receive and confirm; *senders* are the
live ones that carry the token (the ring proper). A member that dies is left out
(`Members` from the master): the ring closes around it, the survivors relay each
other its last messages and approve them for it. A member that comes back — a new
ring process on its restarted node, `Hello` to the master — rejoins *passive*: it
is sent everything each live member knows (`CatchUp`), then receives, confirms and
learns the cut like the others, but carries no token and has no vote (it lost what
its former self promised). A former self that was only frozen learns at once that
it was replaced: the new process ends it.
"""

from __future__ import annotations

import os
from functools import partial

from .. import ProcessExitException, ProcessId, receive_all, remotable, say, send, send_many
from .ledger import Ledger
from .protocol import (
    Ack,
    CatchUp,
    CaughtUp,
    Kick,
    Members,
    Msg,
    Msgs,
    PhaseName,
    Relay,
    Relink,
    Setup,
)
from .random import m
from .result import sum_in_order
from .run import SlaveRun, join_run

__all__ = ["ring_slave"]

SEND = PhaseName.SEND
GRACE = PhaseName.GRACE
REPAIRS = (Relay, CatchUp, CaughtUp)
# Our broadcasts reach the next sender (who answers them) at once, and the other
# members in one `Msgs` every this many: they only confirm them, so the ring's pace
# does not wait on their wake-ups.
BATCH = 16


class _Later:
    """Our broadcasts not yet sent to the members that do not answer them."""

    __slots__ = ("first", "indices", "values")

    def __init__(self) -> None:
        self.first = 0
        self.indices: list[int] = []
        self.values: list[float] = []

    def add(self, first: int, indices: list[int], values: list[float]) -> None:
        if not self.indices:
            self.first = first
        self.indices += indices
        self.values += values

    def flush(self, me: int, to: list[ProcessId], books: Ledger) -> None:
        """Send what is held to *to*, with our latest confirmations and approval."""
        if self.indices and to:
            recv_upto = list(books.recv_upto)
            send_many(
                to, Msgs(me, self.first, self.indices, self.values, recv_upto, books.my_approved)
            )
        self.indices, self.values = [], []


def _hand_over_unsupported() -> None:
    pass


# The token is passed on: let its next holder run first. The kernel wakes a reader on
# the CPU of the process that wrote to it (believing the writer is about to wait), so
# without this the next hop would wait for our books; with it, our books wait for
# a CPU instead (with 4 slaves on 2 cores: 15-25 % more messages a second).
hand_over = getattr(os, "sched_yield", _hand_over_unsupported)


def _ring_over(
    peers: list[ProcessId], me: int, alive: set[int], senders: set[int]
) -> tuple[int, list[ProcessId], list[ProcessId], list[ProcessId]]:
    """Our left neighbour among the *senders* (-1 if we carry no token); whom each
    broadcast reaches at once (the next sender, who answers it: us if we are the only
    one); whom it reaches in batches (every other live member); and every live member
    but us."""
    n = len(peers)
    left, at_once = -1, []
    if me in senders:
        left = next(p % n for p in range(me - 1, me - n - 1, -1) if p % n in senders)
        right = next(p % n for p in range(me + 1, me + n + 1) if p % n in senders)
        at_once.append(peers[right])
    later = [peers[p] for p in sorted(alive) if p != me and peers[p] not in at_once]
    others = [peers[p] for p in sorted(alive) if p != me]
    return left, at_once, later, others


@remotable
async def ring_slave(master: ProcessId, position: int) -> None:
    """A ring slave for *position*: says `Hello` to *master*, waits for its `Setup`,
    then follows it through the phases."""
    setup = await join_run(master, position)
    if setup is not None:
        await _run(setup)


async def _run(setup: Setup) -> None:
    me, seed, tokens = setup.position, setup.seed, setup.tokens
    books = Ledger(len(setup.peers), me, tokens)
    run = SlaveRun(setup, books)
    left, at_once, later, others = _ring_over(run.peers, me, run.alive, run.senders)
    held = _Later()
    total = partial(sum_in_order, value=books.values.__getitem__)
    run.ready("ring")
    senders = run.senders  # (a local: read for every message)
    sent_state: tuple[tuple[int, ...], int] = ((), 0)
    # values worked out while a token was away, for when it is back (m is never 0.0)
    coming: dict[int, float] = {}
    try:
        while True:
            forward: list[int] = []  # the indices to broadcast, when this turn brings a reason
            changed = False  # whether the ring changed: the token may have died with it
            # what our left neighbour sent: answered first, then taken into our books
            answered: list[Msg | Msgs] = []
            for msg in await receive_all():
                t = type(msg)
                if t is Msg:
                    frm = msg.frm
                    if frm not in senders:
                        continue  # left out of the ring (it froze, say): what it says is void
                    if frm == left:
                        if books.answers(frm, msg.index, msg.seq):
                            forward.append(msg.index + tokens)
                        answered.append(msg)
                    else:
                        books.take_msg(msg)
                elif t is Msgs:
                    frm = msg.frm
                    if frm not in senders:
                        continue
                    if frm == left:
                        for k, index in enumerate(msg.indices, msg.first):
                            if books.answers(frm, index, k):
                                forward.append(index + tokens)
                        answered.append(msg)
                    else:
                        books.take_msgs(msg)
                elif t is Ack:
                    if msg.frm in run.alive:
                        if answered and msg.frm == left:  # its older confirmations first
                            books.take_broadcasts(answered)
                            answered = []
                        books.take_confirms(msg.frm, msg.confirms, msg.approved)
                elif t is Kick:
                    forward.append(msg.index + 1)
                else:
                    if answered:  # what follows reads or shows our books: take them first
                        books.take_broadcasts(answered)
                        answered = []
                    if t in REPAIRS:
                        if t is Relay:
                            books.take_relay(msg)
                            changed = True
                        else:
                            books.take_catch_up(msg)
                            if t is CaughtUp:  # its sender counts us in now: tell it
                                sent_state = ((), 0)
                    elif t is Relink:  # a broken connection to a live member
                        if run.links.relink(msg, run.peers, run.alive):
                            p = msg.position
                            if me in senders:
                                send(run.peers[p], books.resend(p))
                            send(run.peers[p], Ack(me, list(books.recv_upto), books.my_approved))
                    elif t is Members:
                        held.flush(me, later, books)  # to whom we owed them
                        _, joined, gone = run.members(msg)
                        senders = run.senders
                        left, at_once, later, others = _ring_over(
                            run.peers, me, run.alive, run.senders
                        )
                        for d in sorted(gone):
                            send_many(others, books.relay(d))
                        for j in sorted(joined - {me}):
                            say(f"position {j} rejoins: sending it what this slave knows")
                            for part in books.catch_up():
                                send(run.peers[j], part)
                        changed = changed or bool(gone)
                        books.changed = True
                        coming.clear()  # the laps change with the ring
                    else:
                        run.control(msg)
                        if run.ended:
                            return

            sending = bool(forward) and run.phase is SEND and not changed
            if answered and (not sending or run.agreement.decided is not None):
                books.take_broadcasts(answered)
                answered = []
            if (books.lost_after or run.agreement.decided is not None) and await run.end_of_batch(
                total
            ):
                return

            if changed:
                books.settle(run.alive, run.senders)
                forward += [i for i in books.owed(run.senders) if i not in forward]

            if forward and run.phase is SEND:
                # what we approved as of the last turn: this turn's approvals go with
                # the next broadcast, so that this one leaves as soon as it can
                approved = books.my_approved
                recv_upto = list(books.recv_upto)
                if len(forward) == 1:
                    index = forward[0]
                    value = coming.pop(index, 0.0) or m(seed, index)
                    seq = books.generate(index, value)
                    one = Msg(index, value, me, seq, recv_upto, approved)
                    send_many(at_once, one)
                    if left != me:  # (alone, we answer our own, through our mailbox)
                        hand_over()
                        books.take_msg(one)
                    if later:
                        held.add(seq, [index], [value])
                else:  # several tokens at once: one frame, so they travel on together
                    values = [coming.pop(i, 0.0) or m(seed, i) for i in forward]
                    first = books.sent + 1
                    for index, value in zip(forward, values, strict=True):
                        books.generate(index, value)
                    out = Msgs(me, first, forward, values, recv_upto, approved)
                    send_many(at_once, out)
                    if left != me:
                        hand_over()
                        books.take_msgs(out)
                    if later:
                        held.add(first, forward, values)
                if answered:
                    books.take_broadcasts(answered)
                if left != me:  # our next numbers, once the tokens are round the ring
                    if len(coming) > 2 * tokens:
                        coming.clear()  # (laps that did not come round: the ring changed)
                    lap = len(senders) * tokens
                    for index in forward:
                        coming[index + lap] = m(seed, index + lap)
                books.settle(run.alive, run.senders)
                if len(held.indices) >= BATCH:
                    held.flush(me, later, books)
                sent_state = (tuple(books.recv_upto), books.my_approved)
                continue
            books.settle(run.alive, run.senders)
            if (run.phase >= GRACE or me in run.passive) and others:
                held.flush(me, later, books)
                state = (tuple(books.recv_upto), books.my_approved)
                if state != sent_state:
                    sent_state = state
                    send_many(others, Ack(me, list(books.recv_upto), books.my_approved))
    except ProcessExitException as e:
        run.ended_by(e)
    finally:
        run.last_word()
