"""The ring process: one per slave node, spawned by the master through the remote table.

Theory of operation
-------------------
The process owns its mailbox loop: each turn it takes *every* message waiting
(`receive_all`: peers' messages, confirmations, the master's phase changes),
updates its bookkeeping, and only then sends — at most one broadcast, or one
`Ack`, each encoded once for all peers (`send_many`) — so receiving is always
preferred over sending and nothing starves. There is no task switch per message:
a turn that finds messages waiting yields to the event loop once and goes on;
only an empty mailbox makes it wait.

Bookkeeping, per ring position p (this process included):

* ``recv_upto[p]``: every message from p up to this index has arrived here, in
  order (`Msg.prev` links each message to its sender's previous one, so a gap is
  seen). This is what we confirm to p.
* ``confirmed_by[p]``: p has confirmed our messages up to this index. Our messages
  up to ``min(confirmed_by)`` are confirmed by every recipient: that is what we
  approve, and it is also when they enter our own result.
* ``approved_from[p]``: p approved its messages up to this index. A message from p
  enters our result once p approves it.
* ``prefix``: every index 1..prefix has entered our result. The master's
  agreement step takes the smallest prefix over all slaves.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections import deque

from .. import (
    ProcessId,
    ProcessMonitorNotification,
    expect,
    get_self_node,
    get_self_pid,
    monitor,
    receive_all,
    remotable,
    say,
    send,
    send_many,
    spawn_local,
    usend,
)
from .cut import Accept, Accepted, Agreement, Decided, Prepare, Promise, Vote
from .protocol import (
    Ack,
    Agree,
    Kick,
    Members,
    Msg,
    Outcome,
    Phase,
    PhaseAck,
    PhaseName,
    Poll,
    PollReply,
    Ready,
    Setup,
    Wake,
)
from .random import m
from .result import RingResult, sum_in_order

__all__ = ["ring_slave"]

START = PhaseName.START
SEND = PhaseName.SEND
GRACE = PhaseName.GRACE
STOP = PhaseName.STOP
VOTES = (Prepare, Promise, Accept, Accepted, Decided)
# The cut: position 0 proposes at once, position k after k times this (so that the
# slaves do not all compete), and each proposes again this often until it is decided.
STAGGER = 0.2
RETRY = 1.0
# A slave that cannot decide (no majority answers) within this says so, and ends.
DECIDE_TIMEOUT = 10.0


def _say_no_result(why: str) -> None:
    """Print (and log) that this slave has no agreed result, and *why*: never a number."""
    line = f"{get_self_node()} has no agreed result: {why}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    say(line)


def _ring_over(
    peers: list[ProcessId], me: int, alive: set[int]
) -> tuple[int, list[ProcessId], list[ProcessId]]:
    """The ring over the live members: our left neighbour's position, whom we
    broadcast to (the right neighbour first: it reacts, so it sets the pace, and us
    last), and the others."""
    n = len(peers)
    left = next(p % n for p in range(me - 1, me - n - 1, -1) if p % n in alive)
    broadcast_order = [peers[(me + k) % n] for k in range(1, n + 1) if (me + k) % n in alive]
    others = [peers[p] for p in sorted(alive) if p != me]
    return left, broadcast_order, others


async def _wake(pid: ProcessId, after: float, phase: int) -> None:
    await asyncio.sleep(max(after, 0.0))
    send(pid, Wake(phase))


@remotable
async def ring_slave() -> None:
    """A ring slave: waits for its `Setup`, then follows the master through the phases."""
    setup = await expect(Setup)
    master = setup.master
    peers = setup.peers
    n = len(peers)
    me = setup.position
    seed = setup.seed
    me_pid = get_self_pid()
    agreement = Agreement(me, n)
    proposal: int | None = None  # what this slave offers as the cut
    masterless = False
    entered = {PhaseName.START: time.monotonic()}
    stop_at = 0.0

    def vote(votes: list[Vote]) -> None:
        # each vote stands alone (Paxos takes them lost, late or twice): `usend`, so a
        # connection lost and made again between two slaves does not silence them
        for v in votes:
            for pid in broadcast_order:
                usend(pid, v)

    def wake(after: float, phase: int = 0) -> None:
        spawn_local(_wake, me_pid, after, phase)

    def offer(count: int) -> None:
        """Offer *count* as the cut (the master's, or our own prefix without it)."""
        nonlocal proposal, stop_at
        if proposal is None:
            proposal = count
            stop_at = time.monotonic()
            rank = sorted(alive).index(me)  # the first live slave proposes at once
            if rank == 0:
                vote(agreement.propose(count))
            wake(STAGGER * rank if rank else RETRY)

    alive = set(range(n))  # the ring's live members, as the master says (`Members`)
    left, broadcast_order, others = _ring_over(peers, me, alive)
    monitor(master)
    say(f"ring position {me} of {n} ready")
    send(master, Ready(me, get_self_node()))

    phase = PhaseName.START
    values: dict[int, float] = {}
    recv_upto = [0] * n
    last_from = [0] * n
    gap = [False] * n
    confirmed_by = [0] * n
    approved_from = [0] * n
    unapproved: list[deque[int]] = [deque() for _ in range(n)]
    done: set[int] = set()  # approved here, beyond the prefix
    prefix = 0
    seen = 0
    generated = 0
    my_approved = 0
    sent_state: tuple[tuple[int, ...], int] = ((0,) * n, 0)
    confirms_of: list[list[int]] = [[0] * n for _ in range(n)]  # p's latest confirmations
    seen_from = -1  # who broadcast the highest index seen

    said = False  # whether this slave printed its result, or why it has none
    try:
        while True:
            forward = 0  # the index to broadcast next, when this turn brings a reason to
            approvals_changed = False
            for msg in await receive_all():
                t = type(msg)
                if t is Msg or t is Ack:
                    frm = msg.frm
                    if frm not in alive:
                        continue  # left out of the ring (it froze, say): what it says is void
                    if t is Msg:
                        index = msg.index
                        values[index] = msg.value
                        if index > seen:
                            seen, seen_from = index, frm
                        if msg.prev == last_from[frm] and not gap[frm]:
                            recv_upto[frm] = index
                        elif not gap[frm]:
                            gap[frm] = True
                            say(f"lost messages from position {frm} after index {last_from[frm]}")
                        last_from[frm] = index
                        unapproved[frm].append(index)
                        if frm == left:
                            forward = index + 1
                    # both carry the sender's confirmations of our messages and its approvals
                    confirms_of[frm] = msg.confirms
                    c = msg.confirms[me]
                    if c > confirmed_by[frm]:
                        confirmed_by[frm] = c
                    if msg.approved > approved_from[frm]:
                        approved_from[frm] = msg.approved
                        approvals_changed = True
                elif t is Kick:
                    forward = msg.index + 1
                elif t is Members:
                    dead = alive - set(msg.alive)
                    alive &= set(msg.alive)
                    left, broadcast_order, others = _ring_over(peers, me, alive)
                    say(f"ring closed around position(s) {sorted(dead)}: {sorted(alive)} go on")
                    # the token may have died with them: if the highest index came from our
                    # new left neighbour and we have not answered it, we do now
                    if seen_from == left and generated < seen:
                        forward = seen + 1
                    approvals_changed = True
                elif t is Phase:
                    phase = PhaseName(msg.phase)
                    entered[phase] = time.monotonic()
                    send(master, PhaseAck(me, phase, generated, prefix, seen))
                elif t is Poll:
                    send(master, PollReply(me, seen))
                elif t is Agree:
                    # the master's count is decided with the other slaves like any other
                    # offer: had the master died meanwhile, no slave can settle on another
                    offer(msg.count)
                elif t in VOTES:
                    vote(agreement.receive(msg))
                elif t is Wake:
                    if msg.phase:  # no master: the next phase, on our own clock
                        phase = PhaseName(msg.phase)
                        entered[phase] = time.monotonic()
                        if phase is GRACE:
                            wake(setup.grace_us / 1e6, STOP)
                        else:
                            offer(prefix)
                    elif agreement.decided is None and proposal is not None:
                        if time.monotonic() - stop_at > DECIDE_TIMEOUT:
                            _say_no_result(
                                f"no majority of the {n} slaves answered within "
                                f"{DECIDE_TIMEOUT:g} s (cut off?)"
                            )
                            said = True
                            return
                        vote(agreement.propose(proposal))
                        wake(RETRY * (1 + random.random()))
                elif t is ProcessMonitorNotification:
                    if phase is START:
                        print(
                            f"{get_self_node()}: the master has gone before SEND", file=sys.stderr
                        )
                        return
                    masterless = True
                    say("the master has gone: finishing the run without it")
                    if phase is SEND:
                        wake(entered[SEND] + setup.send_us / 1e6 - time.monotonic(), GRACE)
                    elif phase is GRACE:
                        wake(entered[GRACE] + setup.grace_us / 1e6 - time.monotonic(), STOP)
                    else:
                        offer(prefix)
                # anything else is not for us: dropped

            if agreement.decided is not None:
                count = agreement.decided
                missing = next((i for i in range(1, count + 1) if i not in values), None)
                if missing is not None:  # left out of the ring (frozen, cut off) meanwhile
                    _say_no_result(
                        f"the cut is {count} but message {missing} never reached this slave "
                        "(it was left out of the ring)"
                    )
                    said = True
                    return
                result = RingResult(count, sum_in_order(count, values.__getitem__))
                line = f"{get_self_node()} {result}"
                if masterless:
                    line += " (finished without a master)"
                sys.stdout.write(line + "\n")  # one write: slaves may share a terminal
                sys.stdout.flush()
                say(line)
                said = True
                if not masterless:
                    send(
                        master, Outcome(me, get_self_node(), count, result.sum, time.process_time())
                    )
                return

            # Our own messages reach us through the mailbox like anyone's: we confirm them
            # to ourselves on arrival.
            confirmed_by[me] = recv_upto[me]
            confirms_of[me] = recv_upto  # ours as they are now (our own Msg carried a copy)
            low = min(confirmed_by) if len(alive) == n else min(confirmed_by[p] for p in alive)
            if low > my_approved:
                my_approved = low
                approved_from[me] = low
                approvals_changed = True
            if len(alive) < n:  # a dead member approves nothing: the live ones do it for it
                for d in range(n):
                    if d not in alive:
                        proxy = min(confirms_of[p][d] for p in alive)
                        if proxy > approved_from[d]:
                            approved_from[d] = proxy
                            approvals_changed = True
            if approvals_changed:
                for p in range(n):
                    q = unapproved[p]
                    bound = approved_from[p]
                    while q and q[0] <= bound:
                        done.add(q.popleft())
                while prefix + 1 in done:
                    prefix += 1
                    done.discard(prefix)

            if forward and phase is SEND:
                out = Msg(forward, m(seed, forward), me, generated, list(recv_upto), my_approved)
                generated = forward
                send_many(broadcast_order, out)
                sent_state = (tuple(recv_upto), my_approved)
            elif phase >= GRACE and others:
                state = (tuple(recv_upto), my_approved)
                if state != sent_state:
                    sent_state = state
                    send_many(others, Ack(me, list(recv_upto), my_approved))
    finally:
        if not said and phase >= SEND:  # ended (a master terminated it, say) undecided
            _say_no_result("it ended before the cut was decided")
