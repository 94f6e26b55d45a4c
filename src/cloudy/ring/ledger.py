"""A slave's bookkeeping of the broadcast: what arrived, what is confirmed and approved (sans-IO).

Per ring position p (this slave's own included):

* ``recv_upto[p]``: every message from p up to this index has arrived here, in
  order (`Msg.prev` links each message to its sender's previous one, so a gap is
  seen). This is what we confirm to p.
* ``confirmed_by[p]``: p has confirmed our messages up to this index. Our messages
  up to the lowest confirmation of every recipient are approved by us.
* ``approved_from[p]``: p approved its messages up to this index. A message from p
  enters our result once p approves it.
* ``prefix``: every index 1..prefix has entered our result. The cut is decided
  among the slaves' prefixes.

Failures (the ledger only keeps the books; the slave says who is a member):

* A member that died approves nothing any more: the live senders approve its
  messages for it, up to what every one of them confirmed (`settle`'s *proxy*).
  Some of its last messages may have reached only some survivors: each survivor
  sends the others what it holds of them (`relay`, `take_relay`), so that the
  proxy approval reaches everything any survivor holds.
* A member that rejoins is sent everything each live member knows (`catch_up`,
  `take_catch_up`): the values arrive in messages, never recomputed.

Nothing here does I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Iterator

from .protocol import CatchUp, CaughtUp, Msg, Relay

__all__ = ["CATCH_UP_CHUNK", "Ledger"]

# Values per `CatchUp` message (about 1.3 MB encoded): well under the frame limit.
CATCH_UP_CHUNK = 100_000


class Ledger:
    """One slave's books over a ring of *n* positions; *me* is its own."""

    def __init__(self, n: int, me: int) -> None:
        self.n = n
        self.me = me
        self.values: dict[int, float] = {}
        self.recv_upto = [0] * n
        self.last_from = [0] * n
        self.gap = [False] * n
        self.confirmed_by = [0] * n
        self.approved_from = [0] * n
        self.confirms_of: list[list[int]] = [[0] * n for _ in range(n)]  # p's latest
        self.unapproved: list[deque[int]] = [deque() for _ in range(n)]
        self.done: set[int] = set()  # approved here, beyond the prefix
        self.prefix = 0
        self.seen = 0  # the highest index received
        # who sent it: the master's `Kick` counts as index 0 from position 0's left
        self.seen_from = n - 1
        self.my_approved = 0
        self.generated = 0  # the last index we broadcast
        self.changed = False  # approvals changed since the last `settle`
        self.lost_after: list[int] = []  # senders whose messages went missing (to say)

    # --- the hot path --------------------------------------------------------------

    def take_msg(self, msg: Msg) -> None:
        """A broadcast message arrived (from a live member)."""
        frm = msg.frm
        index = msg.index
        self.values[index] = msg.value
        if index > self.seen:
            self.seen, self.seen_from = index, frm
        if msg.prev == self.last_from[frm] and not self.gap[frm]:
            self.recv_upto[frm] = index
        elif not self.gap[frm]:
            self.gap[frm] = True
            self.lost_after.append(frm)
        self.last_from[frm] = index
        if frm != self.me:  # ours were queued when we sent them
            self.unapproved[frm].append(index)
        self.take_confirms(frm, msg.confirms, msg.approved)

    def take_confirms(self, frm: int, confirms: list[int], approved: int) -> None:
        """*frm*'s confirmations (of every position's messages) and its own approval."""
        self.confirms_of[frm] = confirms
        c = confirms[self.me]
        if c > self.confirmed_by[frm]:
            self.confirmed_by[frm] = c
        if approved > self.approved_from[frm]:
            self.approved_from[frm] = approved
            self.changed = True

    def settle(self, recipients: Collection[int], senders: Collection[int]) -> None:
        """After a batch: approve what every one of *recipients* confirmed, approve for
        the positions that no longer send (up to what all *senders* confirmed), and
        advance the prefix."""
        n, me = self.n, self.me
        confirmed_by = self.confirmed_by
        confirmed_by[me] = self.recv_upto[me]
        self.confirms_of[me] = self.recv_upto  # ours as they are now
        if len(recipients) == n:
            low = min(confirmed_by)
        else:
            low = min(confirmed_by[p] for p in recipients)
        if low > self.my_approved:
            self.my_approved = low
            self.approved_from[me] = low
            self.changed = True
        if len(senders) < n and senders:
            for d in range(n):
                if d not in senders:
                    proxy = min(self.confirms_of[p][d] for p in senders)
                    if proxy > self.approved_from[d]:
                        self.approved_from[d] = proxy
                        self.changed = True
        if self.changed:
            self.changed = False
            done = self.done
            for p in range(n):
                q = self.unapproved[p]
                bound = self.approved_from[p]
                while q and q[0] <= bound:
                    done.add(q.popleft())
            prefix = self.prefix
            while prefix + 1 in done:
                prefix += 1
                done.discard(prefix)
            self.prefix = prefix

    def generate(self, index: int, value: float) -> None:
        """We broadcast *index*: we hold it from now (it comes back to us too, and that
        is when we confirm it to ourselves)."""
        self.values[index] = value
        self.unapproved[self.me].append(index)
        self.generated = index

    def owes_token(self, senders: Collection[int]) -> bool:
        """Whether we must answer the highest index seen, after the ring changed (a
        member died, or what it sent was relayed): we come first after its sender
        among the *senders*, and have not answered it (nor sent that index ourselves).

        Two members can never both owe it (the next sender after one position is one
        member), so a token lost with a dead member is made again exactly once; an
        index may then be sent twice (by the dead and by us) with the same value,
        which costs nothing.
        """
        n, s = self.n, self.seen_from
        after = next((p % n for p in range(s + 1, s + n + 1) if p % n in senders), -1)
        return after == self.me and (self.generated < self.seen or self.generated == 0)

    def missing(self, count: int) -> int | None:
        """The first index of 1..*count* that never reached this slave, if any."""
        values = self.values
        return next((i for i in range(1, count + 1) if i not in values), None)

    # --- a member died: relay what it sent -------------------------------------------

    def relay(self, dead: int) -> Relay:
        """What we hold of *dead*'s messages beyond what it approved, for the others."""
        indices = list(self.unapproved[dead])
        values = [self.values[i] for i in indices]
        return Relay(dead, self.recv_upto[dead], indices, values)

    def take_relay(self, relay: Relay) -> None:
        d = relay.frm
        fresh = [i for i in relay.indices if i not in self.values]
        for i, v in zip(relay.indices, relay.values, strict=True):
            self.values.setdefault(i, v)
        self._merge_unapproved(d, fresh)
        if relay.complete_upto > self.recv_upto[d]:
            self.recv_upto[d] = relay.complete_upto
        if relay.indices and relay.indices[-1] > self.seen:
            self.seen, self.seen_from = relay.indices[-1], d
        self.changed = True

    # --- a member rejoins: tell it everything ------------------------------------------

    def catch_up(self, generated: int) -> Iterator[CatchUp | CaughtUp]:
        """Everything we know, for a member that rejoins; we sent up to *generated*."""
        items = sorted(self.values.items())
        for start in range(0, len(items), CATCH_UP_CHUNK):
            chunk = items[start : start + CATCH_UP_CHUNK]
            yield CatchUp([i for i, _ in chunk], [v for _, v in chunk])
        yield CaughtUp(
            self.me,
            generated,
            list(self.recv_upto),
            list(self.approved_from),
            self.prefix,
            [list(q) for q in self.unapproved],
            sorted(self.done),
        )

    def take_catch_up(self, part: CatchUp | CaughtUp) -> None:
        if type(part) is CatchUp:
            for i, v in zip(part.indices, part.values, strict=True):
                self.values.setdefault(i, v)
                if i > self.seen:
                    self.seen = i
            return
        assert type(part) is CaughtUp
        q = part.frm
        # every message q sent up to *generated* was in its catch-up; its next ones
        # come to us directly, the first of them naming *generated* as its previous
        self.recv_upto[q] = self.last_from[q] = max(self.recv_upto[q], part.generated)
        self.confirms_of[q] = part.confirms
        for p, a in enumerate(part.approved_from):
            if a > self.approved_from[p]:
                self.approved_from[p] = a
        if part.prefix > self.prefix:
            self.prefix = part.prefix
            self.done = {i for i in self.done if i > part.prefix}
        for p, indices in enumerate(part.unapproved):
            self._merge_unapproved(p, indices)
        self.done.update(i for i in part.done if i > self.prefix)
        self.changed = True

    def _merge_unapproved(self, p: int, indices: Iterable[int]) -> None:
        """Add *indices* (messages of *p* that have not entered our result) to p's queue,
        keeping it in order."""
        q = self.unapproved[p]
        merged = set(q)
        merged.update(i for i in indices if i > self.prefix)
        if len(merged) != len(q):
            self.unapproved[p] = deque(sorted(merged))
