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

import asyncio
import random
import sys
import time

from .. import (
    ProcessExitException,
    ProcessId,
    ProcessMonitorNotification,
    expect,
    get_self_node,
    get_self_pid,
    match_if,
    monitor,
    receive_all,
    receive_wait,
    register,
    remotable,
    reregister,
    say,
    send,
    send_many,
    spawn_local,
    usend,
    whereis,
)
from .. import exit as exit_process
from .cut import Accept, Accepted, Agreement, Decided, Prepare, Promise, Vote
from .ledger import Ledger
from .protocol import (
    Ack,
    Agree,
    CatchUp,
    CaughtUp,
    Hello,
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
    Relay,
    Setup,
    Wake,
)
from .random import m
from .result import RingResult, sum_in_order

__all__ = ["RING_NAME", "ring_slave"]

START = PhaseName.START
SEND = PhaseName.SEND
GRACE = PhaseName.GRACE
STOP = PhaseName.STOP
VOTES = (Prepare, Promise, Accept, Accepted, Decided)
REPAIRS = (Relay, CatchUp, CaughtUp)
# The cut: position 0 proposes at once, position k after k times this (so that the
# slaves do not all compete), and each proposes again this often until it is decided.
STAGGER = 0.2
RETRY = 1.0
# A slave that cannot decide (no majority answers) within this says so, and ends.
DECIDE_TIMEOUT = 10.0
# The name a ring process has on its node, and the reason it gives a former self.
RING_NAME = "cloudy.ring"
REPLACED = "replaced"


def _say_no_result(why: str) -> None:
    """Print (and log) that this slave has no agreed result, and *why*: never a number."""
    line = f"{get_self_node()} has no agreed result: {why}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    say(line)


def _ring_over(
    peers: list[ProcessId], me: int, alive: set[int], senders: set[int]
) -> tuple[int, list[ProcessId], list[ProcessId]]:
    """Our left neighbour among the *senders* (-1 if we carry no token), whom we
    broadcast to (every live member, our right neighbour first: it reacts, so it sets
    the pace, and us last), and the others."""
    n = len(peers)
    left = -1
    if me in senders:
        left = next(p % n for p in range(me - 1, me - n - 1, -1) if p % n in senders)
    broadcast_order = [peers[(me + k) % n] for k in range(1, n + 1) if (me + k) % n in alive]
    others = [peers[p] for p in sorted(alive) if p != me]
    return left, broadcast_order, others


def _name(name: str, pid: ProcessId) -> None:
    if whereis(name) is None:
        register(name, pid)
    else:
        reregister(name, pid)


async def _take_over(master: ProcessId) -> None:
    """Make this the ring process of this node, for *master*'s run.

    A former ring process of the same run (frozen, declared lost, then woken) is
    ended: it learns it was replaced. One of another run — its master died and it
    is finishing that run alone — is waited for: a new master finds the slave busy
    and waits until it has printed its result.
    """
    me = get_self_pid()
    run = f"{RING_NAME}@{master}"
    former = whereis(run)
    if former is not None:
        exit_process(former, REPLACED)
    _name(run, me)
    other = whereis(RING_NAME)
    if other is not None and other != former:
        say(f"this slave is still finishing another run ({other}): waiting for it")
        ref = monitor(other)
        await receive_wait(match_if(ProcessMonitorNotification, lambda n: n.ref == ref, _same))
    _name(RING_NAME, me)


def _same(x: object) -> object:
    return x


async def _wake(pid: ProcessId, after: float, phase: int) -> None:
    await asyncio.sleep(max(after, 0.0))
    send(pid, Wake(phase))


@remotable
async def ring_slave(master: ProcessId, position: int) -> None:
    """A ring slave for *position*: says `Hello` to *master*, waits for its `Setup`,
    then follows it through the phases."""
    await _take_over(master)
    send(master, Hello(position, get_self_pid()))
    try:
        setup = await expect(Setup)
    except ProcessExitException as e:
        if e.reason != REPLACED:
            raise
        return  # replaced before it began
    await _run(setup)


async def _run(setup: Setup) -> None:
    master = setup.master
    peers = list(setup.peers)
    n = len(peers)
    me = setup.position
    seed = setup.seed
    me_pid = get_self_pid()
    rejoined = setup.alive is not None
    agreement = Agreement(me, n, learner=rejoined)
    proposal: int | None = None  # what this slave offers as the cut
    masterless = False
    phase = PhaseName(setup.phase)
    entered = {phase: time.monotonic()}
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
            voters = sorted(senders)  # the first live sender proposes at once
            rank = voters.index(me) if me in voters else len(voters)
            if rank == 0:
                vote(agreement.propose(count))
            wake(STAGGER * rank if rank else RETRY)

    alive = set(range(n)) if setup.alive is None else set(setup.alive)
    passive = set(setup.passive)
    senders = alive - passive
    left, broadcast_order, others = _ring_over(peers, me, alive, senders)
    tokens = setup.tokens
    books = Ledger(n, me, tokens)
    monitor(master)
    say(f"ring position {me} of {n} {'rejoined' if rejoined else 'ready'}")
    send(master, Ready(me, get_self_node()))

    sent_state: tuple[tuple[int, ...], int] = ((0,) * n, 0)
    said = False  # whether this slave printed its result, or why it has none
    try:
        while True:
            forward: list[int] = []  # the indices to broadcast, when this turn brings a reason
            changed = False  # whether the ring changed: the token may have died with it
            for msg in await receive_all():
                t = type(msg)
                if t is Msg:
                    frm = msg.frm
                    if frm not in senders:
                        continue  # left out of the ring (it froze, say): what it says is void
                    books.take_msg(msg)
                    index = msg.index
                    if frm == left and index == books.top[(index - 1) % tokens]:  # not answered
                        forward.append(index + tokens)
                elif t is Ack:
                    if msg.frm in alive:
                        books.take_confirms(msg.frm, msg.confirms, msg.approved)
                elif t is Kick:
                    forward.append(msg.index + 1)
                elif t in REPAIRS:
                    if t is Relay:
                        books.take_relay(msg)
                        changed = True
                    else:
                        books.take_catch_up(msg)
                        if t is CaughtUp:  # its sender counts us in now: tell it
                            sent_state = ((), 0)
                elif t is Members:
                    dead = alive - set(msg.alive)
                    joined = set(msg.alive) - alive
                    gone = senders - set(msg.alive)  # senders that died: relay their last
                    alive, passive = set(msg.alive), set(msg.passive)
                    senders = alive - passive
                    if msg.peers is not None:
                        peers = list(msg.peers)
                    left, broadcast_order, others = _ring_over(peers, me, alive, senders)
                    if dead:
                        say(f"ring closed around position(s) {sorted(dead)}: {sorted(alive)} go on")
                    for d in sorted(gone):
                        send_many(others, books.relay(d))
                    for j in sorted(joined - {me}):
                        say(f"position {j} rejoins: sending it what this slave knows")
                        for part in books.catch_up():
                            send(peers[j], part)
                    changed = changed or bool(gone)
                    books.changed = True
                elif t is Phase:
                    phase = PhaseName(msg.phase)
                    entered[phase] = time.monotonic()
                    send(master, PhaseAck(me, phase, books.generated, books.prefix, books.seen))
                elif t is Poll:
                    send(master, PollReply(me, books.seen))
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
                            offer(books.prefix)
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
                    since = entered.get(phase, time.monotonic())
                    if phase is SEND:
                        wake(since + setup.send_us / 1e6 - time.monotonic(), GRACE)
                    elif phase is GRACE:
                        wake(since + setup.grace_us / 1e6 - time.monotonic(), STOP)
                    else:
                        offer(books.prefix)
                # anything else is not for us: dropped

            if books.lost_after:
                for frm in books.lost_after:
                    say(f"lost messages from position {frm} after #{books.recv_upto[frm]}")
                books.lost_after.clear()

            if agreement.decided is not None:
                said = _finish(agreement.decided, books, masterless, master, me)
                return

            books.settle(alive, senders)
            if changed:
                forward += [i for i in books.owed(senders) if i not in forward]

            if forward and phase is SEND:
                approved = books.my_approved
                for index in forward:
                    value = m(seed, index)
                    recv_upto = list(books.recv_upto)
                    seq = books.generate(index, value)
                    send_many(broadcast_order, Msg(index, value, me, seq, recv_upto, approved))
                sent_state = (tuple(books.recv_upto), books.my_approved)
            elif (phase >= GRACE or me in passive) and others:
                state = (tuple(books.recv_upto), books.my_approved)
                if state != sent_state:
                    sent_state = state
                    send_many(others, Ack(me, list(books.recv_upto), books.my_approved))
    except ProcessExitException as e:
        if e.reason != REPLACED:
            raise
        _say_no_result("it was declared lost, and a new ring process replaced it")
        said = True
    finally:
        if not said and phase >= SEND:  # ended (a master terminated it, say) undecided
            _say_no_result("it ended before the cut was decided")


def _finish(count: int, books: Ledger, masterless: bool, master: ProcessId, me: int) -> bool:
    """The cut is *count*: print our result over 1..count (or why we have none), and
    report it to the master. True: something was printed."""
    missing = books.missing(count)
    if missing is not None:  # left out of the ring (frozen, cut off) meanwhile
        _say_no_result(
            f"the cut is {count} but message {missing} never reached this slave "
            "(it was left out of the ring)"
        )
        return True
    result = RingResult(count, sum_in_order(count, books.values.__getitem__))
    line = f"{get_self_node()} {result}"
    if masterless:
        line += " (finished without a master)"
    sys.stdout.write(line + "\n")  # one write: slaves may share a terminal
    sys.stdout.flush()
    say(line)
    if not masterless:
        send(master, Outcome(me, get_self_node(), count, result.sum, time.process_time()))
    return True
