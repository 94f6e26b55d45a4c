"""A slave's side of a run, shared by every model: taking over the node, the phases
(with a master or, once it died, on the slave's own clock), membership, the cut,
and printing the result.

A model's slave process owns its loop: it handles its own messages (broadcasts,
confirmations, repairs) and hands everything else to `SlaveRun.control`; after each
batch it asks `SlaveRun.decided` whether the cut is known, and then `finish`es. The
books it keeps need only say its *prefix* (every index 1..prefix is approved
here), the highest index it *generated* and the highest it has *seen*.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Protocol

from .. import (
    ProcessExitException,
    ProcessId,
    ProcessMonitorNotification,
    clock,
    get_self_node,
    get_self_pid,
    match_any,
    monitor,
    nsend_remote,
    receive_timeout,
    reconnect,
    register,
    say,
    send,
    spawn_local,
    unregister,
    usend,
    whereis,
)
from .cut import Accept, Accepted, Agreement, Decided, Prepare, Promise, Vote
from .join import REPLACED, RING_NAME, join_run
from .links import PeerLinks
from .protocol import (
    Agree,
    Fetch,
    Fetched,
    Late,
    Members,
    Outcome,
    Phase,
    PhaseAck,
    PhaseName,
    Poll,
    PollReply,
    Ready,
    Setup,
    Verdict,
    Wake,
)
from .result import RingResult
from .timeline import Sampler

__all__ = ["Books", "SlaveRun", "join_run"]

START = PhaseName.START
SEND = PhaseName.SEND
GRACE = PhaseName.GRACE
STOP = PhaseName.STOP
VOTES = (Prepare, Promise, Accept, Accepted, Decided)
# The cut: the first live sender proposes at once, the k-th after k times this (so
# that the slaves do not all compete), and each proposes again this often until it
# is decided.
STAGGER = 0.2
RETRY = 1.0
# A slave that cannot decide (no majority answers) within this says so, and ends.
DECIDE_TIMEOUT = 10.0
# After printing its result a slave keeps the verdict (the cut, the values) this long
# for a slave that was left out and woke late, under this name (and the master's pid).
LINGER = 8.0
VERDICT_NAME = "cloudy.ring.verdict"
# How long a slave that knows the cut but lacks messages keeps asking for them.
FETCH_TIMEOUT = 5.0
# Values per `Fetched` message.
FETCH_CHUNK = 100_000


class Books(Protocol):
    """What the shared part needs to know of a model's books."""

    prefix: int
    generated: int
    seen: int
    ahead: int  # the most messages it ran ahead of its own approvals
    lost_after: list[int]  # senders with a gap in their numbers, not said yet

    def missing(self, count: int) -> list[int]:
        """The indices of 1..*count* that never reached this slave."""
        ...

    def value_of(self, index: int) -> float | None:
        """The value message *index* carried, if it reached this slave."""
        ...

    def store(self, indices: list[int], values: list[float]) -> None:
        """Messages fetched from another slave (their values arrived in a message)."""
        ...


async def _keep_verdict(count: int, books: Books) -> None:
    """For `LINGER` seconds, answer late slaves: the cut (`Verdict`), and the values
    they lack (`Fetched`) (its starter registers it under the verdict's name)."""
    deadline = clock.now() + LINGER
    while (left := deadline - clock.now()) > 0:
        msg = await receive_timeout(left, match_any())
        if isinstance(msg, Late):
            send(msg.pid, Verdict(count))
        elif isinstance(msg, Fetch):
            held = [(i, v) for i in msg.indices if (v := books.value_of(i)) is not None]
            for start in range(0, len(held), FETCH_CHUNK):
                part = held[start : start + FETCH_CHUNK]
                send(msg.pid, Fetched([i for i, _ in part], [v for _, v in part]))


async def _wake(pid: ProcessId, after: float, phase: int) -> None:
    await asyncio.sleep(max(after, 0.0))
    send(pid, Wake(phase))


def say_no_result(why: str) -> None:
    """Print that this slave has no agreed result, and *why* (never a number); a master
    that has this slave's logs hears it too, since no report of ours will tell it."""
    line = f"{get_self_node()} has no agreed result: {why}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    logger = whereis("logger")
    if logger is not None and logger.node != get_self_node():
        say(line)


class SlaveRun:
    """One slave's run: who the members are, which phase it is in, and the cut."""

    def __init__(self, setup: Setup, books: Books) -> None:
        self.setup = setup
        self.books = books
        self.master = setup.master
        self.peers = list(setup.peers)
        self.n = n = len(self.peers)
        self.me = setup.position
        self.pid = get_self_pid()
        self.rejoined = setup.alive is not None
        self.alive = set(range(n)) if setup.alive is None else set(setup.alive)
        self.passive = set(setup.passive)
        self.senders = self.alive - self.passive
        self.agreement = Agreement(self.me, n, learner=self.rejoined)
        self.proposal: int | None = None  # what this slave offers as the cut
        self.masterless = False
        self.phase = PhaseName(setup.phase)
        self.entered = {self.phase: clock.now()}
        self.stop_at = 0.0
        self.said = False  # whether it printed its result, or why it has none
        self.ended = False  # whether the run is over for this slave
        self.voters: list[ProcessId] = [self.peers[p] for p in sorted(self.alive)]
        self.fetching = 0.0  # since when we ask for messages we lack (0: we do not)
        self.verdict_name = f"{VERDICT_NAME}@{self.master}"
        # the approved prefix over time, on a timer (`timeline`): nothing per message
        self.sampler = Sampler(lambda: books.prefix)
        self.links = PeerLinks(self.me)  # the connections to the other members

    def ready(self, model: str) -> None:
        monitor(self.master)
        if self.rejoined and whereis(self.verdict_name) is not None:
            # a former ring process of ours finished this run (cut off, it went on
            # without the master) and printed our result: once is enough
            say(f"{model} position {self.me} of {self.n} had finished already")
            self.said = self.ended = True
            send(self.pid, Wake(0))  # (so that the loop sees it has ended)
            return
        if self.phase is STOP:  # came back too late to rejoin: finish late
            say(f"{model} position {self.me} of {self.n} is late: asking for the verdict")
            self.proposal, self.stop_at = 0, clock.now()
            self._ask(Late(self.pid))
            self.wake(RETRY)
            return
        if self.rejoined:  # (a plain start is on the master's display: not one line each)
            say(f"{model} position {self.me} of {self.n} rejoined")
        self.links.watch(self.peers, self.alive)
        send(self.master, Ready(self.me, get_self_node()))

    # --- membership ----------------------------------------------------------------

    def members(self, msg: Members) -> tuple[set[int], set[int], set[int]]:
        """The master's new membership: (the dead, the newly joined, the senders that
        died), for the model to repair what they leave."""
        alive = set(msg.alive)
        dead, joined, gone = self.alive - alive, alive - self.alive, self.senders - alive
        self.alive, self.passive = alive, set(msg.passive)
        self.senders = alive - self.passive
        if msg.peers is not None:
            self.peers = list(msg.peers)
        self.voters = [self.peers[p] for p in sorted(alive)]
        self.links.watch(self.peers, alive)
        if dead:
            at, left = self.books.seen, sorted(alive)
            say(f"ring closed around position(s) {sorted(dead)} at message {at}: {left} go on")
        return dead, joined, gone

    # --- the master's messages, votes and timers ------------------------------------

    def control(self, msg: object) -> None:
        """Anything that is not the model's own; sets `ended` when the run is over."""
        t = type(msg)
        books = self.books
        if t is Phase:
            assert isinstance(msg, Phase)
            self.phase = PhaseName(msg.phase)
            self.entered[self.phase] = clock.now()
            ack = PhaseAck(self.me, self.phase, books.generated, books.prefix, books.seen)
            send(self.master, ack)
        elif t is Poll:
            send(self.master, PollReply(self.me, books.seen))
        elif t is Agree:
            assert isinstance(msg, Agree)
            # the master's count is decided with the other slaves like any other offer:
            # had the master died meanwhile, no slave can settle on another
            self.offer(msg.count)
        elif t in VOTES:
            self.vote(self.agreement.receive(msg))  # type: ignore[arg-type]
        elif t is Wake:
            assert isinstance(msg, Wake)
            self._wake(msg.phase)
        elif t is ProcessMonitorNotification:
            assert isinstance(msg, ProcessMonitorNotification)
            if msg.pid == self.master:
                self._master_gone()
            else:  # a member's (its link broke?), or a former self's end
                self.links.broken(msg, self.alive)
        elif t is Verdict:
            assert isinstance(msg, Verdict)
            self.vote(self.agreement.receive(Decided(msg.count)))
        elif t is Fetched:
            assert isinstance(msg, Fetched)
            books.store(msg.indices, msg.values)
        # anything else is not for us: dropped

    def vote(self, votes: list[Vote]) -> None:
        # each vote stands alone (Paxos takes them lost, late or twice): `usend`, so a
        # connection lost and made again between two slaves does not silence them
        for v in votes:
            for pid in self.voters:
                usend(pid, v)

    def wake(self, after: float, phase: int = 0) -> None:
        spawn_local(_wake, self.pid, after, phase)

    def offer(self, count: int) -> None:
        """Offer *count* as the cut (the master's, or our own prefix without it)."""
        if self.proposal is None:
            self.proposal = count
            self.stop_at = clock.now()
            voters = sorted(self.senders)  # the first live sender proposes at once
            rank = voters.index(self.me) if self.me in voters else len(voters)
            if rank == 0:
                self.vote(self.agreement.propose(count))
            self.wake(STAGGER * rank if rank else RETRY)
            if self.masterless:  # left out, perhaps, and late: did the others decide?
                self._ask(Late(self.pid))

    def _wake(self, phase: int) -> None:
        setup = self.setup
        if phase:  # no master: the next phase, on our own clock
            self.phase = PhaseName(phase)
            self.entered[self.phase] = clock.now()
            if self.phase is GRACE:
                self.wake(setup.grace_us / 1e6, STOP)
            else:
                self.offer(self.books.prefix)
        elif self.fetching:
            self._ask(Fetch(self.pid, self.books.missing(self.agreement.decided or 0)))
            self.wake(RETRY)
        elif self.agreement.decided is None and self.proposal is not None:
            self._ask(Late(self.pid))
            if clock.now() - self.stop_at > DECIDE_TIMEOUT:
                self.no_result(
                    f"no majority of the {self.n} slaves answered within "
                    f"{DECIDE_TIMEOUT:g} s (cut off?)"
                )
                return
            self.vote(self.agreement.propose(self.proposal))
            self.wake(RETRY * (1 + clock.chance().random()))

    def _ask(self, msg: Late | Fetch) -> None:
        """Ask every other slave's kept verdict (they may have finished, and we were
        cut off from them: reconnect first)."""
        for p, pid in enumerate(self.peers):
            if p != self.me:
                reconnect(pid.node)
                nsend_remote(pid.node, self.verdict_name, msg)

    def _master_gone(self) -> None:
        if self.phase is START:
            print(f"{get_self_node()}: the master has gone before SEND", file=sys.stderr)
            self.ended = True
            return
        self.masterless = True
        # on our own stderr: our logs may still go to the master's logger, now gone
        sys.stderr.write(f"{get_self_node()}: the master has gone: finishing the run without it\n")
        sys.stderr.flush()
        since = self.entered.get(self.phase, clock.now())
        if self.phase is SEND:
            self.wake(since + self.setup.send_us / 1e6 - clock.now(), GRACE)
        elif self.phase is GRACE:
            self.wake(since + self.setup.grace_us / 1e6 - clock.now(), STOP)
        else:
            self.offer(self.books.prefix)

    # --- the end ---------------------------------------------------------------------

    @property
    def decided(self) -> int | None:
        return self.agreement.decided

    def no_result(self, why: str) -> None:
        say_no_result(why)
        self.said = self.ended = True

    async def end_of_batch(self, total: Callable[[int], float]) -> bool:
        """After a batch: say what went missing; once the cut is decided, `finish`.
        True when the run is over for this slave."""
        if self.books.lost_after:
            for frm in self.books.lost_after:
                say(f"lost messages from position {frm} (a gap in its numbers)")
            self.books.lost_after.clear()
        if self.agreement.decided is not None:
            await self.finish(total)
        return self.ended

    async def finish(self, total: Callable[[int], float]) -> None:
        """The cut is decided: print our result over 1..cut — *total(cut)* is the sum
        — and report it to the master. Messages we lack are fetched from the others
        first (for `FETCH_TIMEOUT`), or we say why we have no result."""
        count = self.agreement.decided
        assert count is not None
        missing = self.books.missing(count)
        if missing:  # left out of the ring (frozen, cut off) meanwhile
            now = clock.now()
            if not self.fetching:
                self.fetching = now
                say(f"the cut is {count}; fetching {len(missing)} message(s) never received")
                self._ask(Fetch(self.pid, missing))
                self.wake(RETRY)
            elif now - self.fetching > FETCH_TIMEOUT:
                self.no_result(
                    f"the cut is {count} but message {missing[0]} never reached this slave "
                    "(it was left out of the ring) and no other slave sent it"
                )
            return
        timeline = self.sampler.stop(count)  # decided now (the sum may take a while)
        # millions of additions take a while: in a thread, so that this node's loop
        # goes on (its heartbeat above all: a silent node would be declared lost)
        result = RingResult(count, await asyncio.to_thread(total, count))
        line = f"{get_self_node()} {result}"
        if self.masterless:
            line += " (finished without a master)"
        # one write: slaves may share a terminal. Not logged: the master has it in the
        # `Outcome` (its table), so a shared terminal shows it once, not twice
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        self.said = self.ended = True
        if not self.masterless:
            cpu, ahead, node = clock.cpu(), self.books.ahead, get_self_node()
            send(self.master, Outcome(self.me, node, count, result.sum, cpu, ahead, timeline))
        # keep the verdict for a slave that was left out and wakes late, under a name
        # given at once: a new ring process of ours that starts in this very turn must
        # see that we finished (else it would finish, and print, again)
        if whereis(self.verdict_name) is None:
            register(self.verdict_name, spawn_local(_keep_verdict, count, self.books))
        # let a new run in at once (it need not wait for that)
        if whereis(RING_NAME) == self.pid:
            unregister(RING_NAME)

    def ended_by(self, e: ProcessExitException) -> None:
        """The run process was told to exit: by its replacement, or by someone else."""
        if e.reason != REPLACED:
            raise e
        self.no_result("it was declared lost, and a new ring process replaced it")

    def last_word(self) -> None:
        """Called as the process ends: an undecided slave says so."""
        self.sampler.stop()
        if not self.said and self.phase >= SEND:
            say_no_result("it ended before the cut was decided")
