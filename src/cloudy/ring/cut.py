"""The cut: every slave settles on the same agreed count, whatever fails (sans-IO).

Theory of operation
-------------------
At STOP every slave knows a *prefix* P (every index 1..P is approved, so every
live slave holds those messages). The master used to take the minimum over all
slaves; without the master, or with a slave gone, "the minimum of what I heard"
can differ from slave to slave, and two slaves could print different results.
So the count is *decided*, once, by single-decree Paxos over the ring's slaves:

* a slave that wants a decision picks a ballot ``(round, position)`` above any it
  has seen and asks every slave to `Prepare` for it;
* a slave *promises* a ballot at least as high as any it promised before, telling
  which value it last accepted (if any) and under which ballot;
* with promises from a majority, the proposer proposes the value accepted under
  the highest ballot among them — or, if none was, its own value — and asks every
  slave to `Accept` it;
* a slave accepts unless it promised a higher ballot since; a value accepted by a
  majority under one ballot is *decided*, and every slave that learns of it says
  so to the others (`Decided`).

Why two slaves can never decide different counts: a decided value v was accepted
by a majority M under ballot b. Any proposal under a higher ballot b' needs
promises from a majority M', which meets M in at least one slave; that slave
accepted v under b (or something under a ballot between b and b', itself only
proposable as v, by induction), and reports it, so the proposer of b' must
propose v. Messages may be lost, delayed, duplicated or reordered, and slaves
may crash: none of that breaks the argument, it can only delay a decision (a
majority must be alive and talking for one to be reached). A minority cut off
from the rest can never decide anything: it says so, and prints no number.

Nothing here does I/O: `Agreement` takes messages in and gives out what to send
(to every slave, itself included: its own messages come back to it like anyone's).
"""

from __future__ import annotations

from typing import NamedTuple

from .. import Message

__all__ = ["Accept", "Accepted", "Agreement", "Ballot", "Decided", "Prepare", "Promise", "Vote"]


class Ballot(NamedTuple):
    """Ordered by round, then by the proposer's position: unique per proposer."""

    round: int
    proposer: int


NO_BALLOT = Ballot(-1, -1)


class Prepare(Message):
    """Promise to take no ballot below *ballot* (round, proposer)."""

    round: int
    proposer: int


class Promise(Message):
    """*frm* promises ballot (round, proposer); it last accepted *value* under
    (accepted_round, accepted_proposer), or nothing (-1, -1)."""

    frm: int
    round: int
    proposer: int
    accepted_round: int
    accepted_proposer: int
    value: int


class Accept(Message):
    """Accept *value* under ballot (round, proposer), unless a higher one was promised."""

    round: int
    proposer: int
    value: int


class Accepted(Message):
    """*frm* accepted *value* under ballot (round, proposer)."""

    frm: int
    round: int
    proposer: int
    value: int


class Decided(Message):
    """The count is *value*: a majority accepted it under one ballot."""

    value: int


Vote = Prepare | Promise | Accept | Accepted | Decided


class Agreement:
    """One slave's part in deciding the cut: acceptor, proposer and learner at once.

    With *learner*, only a learner: a slave that rejoined after a crash has lost what
    it promised and accepted before, so it must neither answer votes nor propose
    (its ballots could repeat its former self's); it learns the decision.
    """

    def __init__(self, me: int, n: int, learner: bool = False) -> None:
        if not 0 <= me < n:
            raise ValueError(f"position {me} is not in a ring of {n}")
        self.me = me
        self.n = n
        self.learner = learner
        self.quorum = n // 2 + 1
        # acceptor
        self.promised = NO_BALLOT
        self.accepted = NO_BALLOT
        self.accepted_value = 0
        # proposer
        self.ballot = NO_BALLOT
        self.own_value = 0
        self.promises: dict[int, Promise] = {}
        self.proposing = False
        # learner: ballot -> who accepted (and what) under it
        self.votes: dict[Ballot, dict[int, int]] = {}
        self.decided: int | None = None

    def __repr__(self) -> str:
        return f"<Agreement {self.me}/{self.n} promised={self.promised} decided={self.decided}>"

    def propose(self, value: int) -> list[Vote]:
        """Try (again) to decide, offering *value* if no other is bound to win."""
        if self.decided is not None:
            return [Decided(self.decided)]
        if self.learner:
            return []
        highest = max(self.promised, self.ballot, self.accepted)
        self.ballot = Ballot(highest.round + 1, self.me)
        self.own_value = value
        self.promises = {}
        self.proposing = True
        return [Prepare(*self.ballot)]

    def receive(self, msg: Vote) -> list[Vote]:
        """Take one message (in any order, any number of times); what to send to all."""
        if type(msg) is Decided:
            return self._learn(msg.value)
        if self.decided is not None:
            return [Decided(self.decided)] if type(msg) is not Accepted else []
        if self.learner and type(msg) is not Accepted:
            return []
        if type(msg) is Prepare:
            return self._on_prepare(Ballot(msg.round, msg.proposer))
        if type(msg) is Promise:
            return self._on_promise(msg)
        if type(msg) is Accept:
            return self._on_accept(Ballot(msg.round, msg.proposer), msg.value)
        if type(msg) is Accepted:
            return self._on_accepted(msg)
        return []

    # --- acceptor ------------------------------------------------------------------

    def _on_prepare(self, ballot: Ballot) -> list[Vote]:
        if ballot < self.promised:
            return []
        self.promised = ballot
        accepted = self.accepted
        return [Promise(self.me, *ballot, *accepted, self.accepted_value)]

    def _on_accept(self, ballot: Ballot, value: int) -> list[Vote]:
        if ballot < self.promised:
            return []
        self.promised = ballot
        self.accepted = ballot
        self.accepted_value = value
        return [Accepted(self.me, *ballot, value)]

    # --- proposer ------------------------------------------------------------------

    def _on_promise(self, msg: Promise) -> list[Vote]:
        if not self.proposing or Ballot(msg.round, msg.proposer) != self.ballot:
            return []  # for a ballot of someone else's, or an old one of ours
        self.promises[msg.frm] = msg
        if len(self.promises) < self.quorum:
            return []
        self.proposing = False  # one Accept per ballot
        best = max(
            self.promises.values(), key=lambda p: Ballot(p.accepted_round, p.accepted_proposer)
        )
        bound = Ballot(best.accepted_round, best.accepted_proposer) != NO_BALLOT
        value = best.value if bound else self.own_value
        return [Accept(*self.ballot, value)]

    # --- learner -------------------------------------------------------------------

    def _on_accepted(self, msg: Accepted) -> list[Vote]:
        ballot = Ballot(msg.round, msg.proposer)
        votes = self.votes.setdefault(ballot, {})
        votes[msg.frm] = msg.value
        if len(votes) >= self.quorum:
            return self._learn(msg.value)
        return []

    def _learn(self, value: int) -> list[Vote]:
        if self.decided is None:
            self.decided = value
            return [Decided(value)]  # tell the others, who may have missed the votes
        if self.decided != value:  # cannot happen: see the module's docstring
            raise AssertionError(f"two decisions: {self.decided} and {value}")
        return []
