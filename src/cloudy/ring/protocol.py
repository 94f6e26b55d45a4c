"""The experiment's messages: master <-> slave (any model), and slave <-> slave (the ring).

Master to slave: `Setup`, `Phase` (SEND, GRACE, STOP), `Poll`, `Agree`, `Members`.
Slave to master: `Hello` (a ring process just started), `Ready`, `PhaseAck`,
`PollReply`, `Outcome`.
Ring slaves to each other: `Kick`, `Msg`, `Ack`, the votes that decide the cut
(`cut.py`), and the repairs after a failure: `Relay` (a dead member's messages that
some survivors may lack), `CatchUp` and `CaughtUp` (everything a member knows, for
one that rejoins). A slave to itself: `Wake`.

Confirmations and approvals are cumulative high-water marks. Messages from one
process to another arrive in the order sent, and every `Msg` carries its number
among its sender's broadcasts (`seq`), so "I have received your broadcasts up to
number X" is one integer per sender, and so is "my broadcasts up to number Y are
confirmed by all recipients". They ride on the next `Msg` a slave
broadcasts anyway (in a token ring every slave broadcasts once per round), and
on an explicit `Ack` whenever no broadcast is coming (in GRACE).
"""

from __future__ import annotations

import enum

import msgspec

from .. import Message, NodeId, ProcessId
from .timeline import Timeline

__all__ = [
    "Ack",
    "Agree",
    "CatchUp",
    "CaughtUp",
    "Fetch",
    "Fetched",
    "Hello",
    "Kick",
    "Late",
    "Members",
    "Msg",
    "Msgs",
    "Outcome",
    "Phase",
    "PhaseAck",
    "PhaseName",
    "Poll",
    "PollReply",
    "Ready",
    "Relay",
    "Relink",
    "Setup",
    "Verdict",
    "Wake",
]


class PhaseName(enum.IntEnum):
    START = 0
    SEND = 1
    GRACE = 2
    STOP = 3


# --- master -> slave ----------------------------------------------------------------


class Setup(Message):
    """Everything a slave needs: the ring (by position), its place in it, the run's seed.

    A slave that rejoins a running ring also gets the members (*alive*, of which
    *passive* ones only receive) and the *phase* the run is in. *tokens* and *window*
    are the model's parameters.
    """

    master: ProcessId
    peers: list[ProcessId]
    position: int
    seed: int
    send_us: int
    grace_us: int
    alive: list[int] | None = None
    passive: list[int] = msgspec.field(default_factory=list)
    phase: int = 0
    tokens: int = 1  # tokens travelling the ring at once (the pipelined model)
    window: int = 0  # how far a slave may run ahead of its approvals (the stream model)


class Phase(Message):
    """Move to *phase* (a `PhaseName`); the slave answers with a `PhaseAck`."""

    phase: int


class Members(Message):
    """The ring's live members (positions) and their *peers* (pids, by position).

    Members missing from the last list died: close the ring around them. *passive*
    members rejoined after a failure: they receive, confirm and learn the cut, but
    carry no token (the ring of senders is *alive* without them).
    """

    alive: list[int]
    passive: list[int] = msgspec.field(default_factory=list)
    peers: list[ProcessId] | None = None


class Poll(Message):
    """Progress request; answered with a `PollReply`."""


class Agree(Message):
    """The agreed set is indices 1..count: compute the result over it, print and report it."""

    count: int


# --- slave -> master ----------------------------------------------------------------


class Hello(Message):
    """A ring process for *position* has started (first, or again after a failure)."""

    position: int
    pid: ProcessId


class Ready(Message):
    position: int
    node: NodeId


class PhaseAck(Message):
    """*generated*: the highest index this slave has broadcast so far.

    *prefix*: every index 1..prefix is approved here. *seen*: the highest index received.
    """

    position: int
    phase: int
    generated: int
    prefix: int
    seen: int


class PollReply(Message):
    position: int
    seen: int


class Outcome(Message):
    """A slave's result; *cpu_s* is the CPU time its OS process has used so far.

    *timeline*: its agreed count over time (`timeline`); None from an older slave."""

    position: int
    node: NodeId
    count: int
    sum: float
    cpu_s: float
    ahead: int = 0  # the most messages it ran ahead of its approvals (its window held)
    timeline: Timeline | None = None


# --- slave <-> slave ----------------------------------------------------------------


class Kick(Message):
    """Start the ring: the receiver broadcasts index ``index + 1``."""

    index: int


class Msg(Message):
    """Broadcast message *index* with *value*, from ring position *frm*.

    *seq*: its number among *frm*'s broadcasts (1, 2, 3, …: a gap shows a loss).
    *confirms[p]*: *frm* holds position p's broadcasts 1..confirms[p].
    *approved*: every broadcast of *frm* up to that number is confirmed by all.
    """

    index: int
    value: float
    frm: int
    seq: int
    confirms: list[int]
    approved: int


class Msgs(Message):
    """Several broadcasts of *frm* at once (the pipelined model: a turn that answers
    several tokens): message *indices[k]* with *values[k]* is *frm*'s broadcast
    number *first* + k. One frame, so the tokens travel on together."""

    frm: int
    first: int
    indices: list[int]
    values: list[float]
    confirms: list[int]
    approved: int


class Wake(Message):
    """A slave's own timer: move to *phase* (without a master), or (*phase* 0) propose
    the cut again if it is not decided yet."""

    phase: int


class Relink(Message):
    """A slave's own timer: its connection to position *position*'s node (its ring
    process *pid*) broke a while ago; make it again, and send what may have been lost."""

    position: int
    pid: ProcessId


class Ack(Message):
    """Confirmations and approval of *frm*, as in `Msg`, when there is no message to carry them."""

    frm: int
    confirms: list[int]
    approved: int


class Relay(Message):
    """Broadcasts of dead member *frm* that the sender holds beyond what *frm*
    approved: *frm*'s numbers *first*, *first* + 1, … carried *indices* and *values*."""

    frm: int
    first: int
    indices: list[int]
    values: list[float]


class CatchUp(Message):
    """Part of what a member knows, for one that rejoins: messages by index."""

    indices: list[int]
    values: list[float]


class CaughtUp(Message):
    """The end of member *frm*'s catch-up, which held all its *sent* broadcasts; its
    books as `Ledger` keeps them (per position: what it approved, confirmed, and
    the broadcasts numbered *popped* + 1, … not yet in its result)."""

    frm: int
    sent: int
    confirms: list[int]
    approved_from: list[int]
    prefix: int
    popped: list[int]
    unapproved: list[list[int]]
    done: list[int]


# --- a slave left out, that woke after the run: finishing late ------------------------


class Late(Message):
    """From a slave left out of the run (frozen past detection, woken after it): what
    was decided? A slave that finished answers with a `Verdict`."""

    pid: ProcessId


class Verdict(Message):
    """The cut that was decided."""

    count: int


class Fetch(Message):
    """Send *pid* the values of *indices* (messages it never got); answered `Fetched`."""

    pid: ProcessId
    indices: list[int]


class Fetched(Message):
    """Messages a late slave asked for: index *indices[k]* carried *values[k]*."""

    indices: list[int]
    values: list[float]
