"""A slave's bookkeeping of the broadcast: what arrived, what is confirmed and approved (sans-IO).

Every member numbers its broadcasts 1, 2, 3, … (`Msg.seq`); messages from one
process to another arrive in the order sent, so per ring position p (this
slave's own included) one integer says each of these:

* ``recv_upto[p]``: we hold p's broadcasts 1..recv_upto[p] (a gap in the numbers
  stops it). This is what we confirm to p.
* ``confirmed_by[p]``: p has confirmed our broadcasts up to this number. Ours up
  to the lowest confirmation of every recipient are approved by us.
* ``approved_from[p]``: p approved its broadcasts up to this number. A message
  from p enters our result once p approves it.
* ``prefix``: every index 1..prefix has entered our result. The cut is decided
  among the slaves' prefixes.

Numbers, not indices, because with several tokens (the pipelined model) or after a
failure a member may send a lower index after a higher one.

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
from collections.abc import Collection, Iterator

from .approvals import Approvals
from .protocol import CatchUp, CaughtUp, Msg, Msgs, Relay
from .values import Values

__all__ = ["CATCH_UP_CHUNK", "Ledger"]

# Values per `CatchUp` message (about 1.3 MB encoded): well under the frame limit.
CATCH_UP_CHUNK = 100_000
NEVER = -(1 << 62)  # below every index


class Ledger(Approvals):
    """One slave's books over a ring of *n* positions; *me* is its own; *tokens*
    tokens travel the ring (token c hands out the indices i with (i - 1) % tokens
    == c, each answered by adding *tokens*)."""

    def __init__(self, n: int, me: int, tokens: int = 1) -> None:
        super().__init__(n, me)
        self.tokens = tokens
        self.values = Values()
        self.recv_upto = [0] * n
        self.heard = [0] * n  # the highest number answered (`answers`) from each
        self.gap = [False] * n
        # p's broadcasts not yet in our result, by index, in p's order: numbers
        # popped[p] + 1, popped[p] + 2, …
        self.unapproved: list[deque[int]] = [deque() for _ in range(n)]
        self.popped = [0] * n
        self.done: set[int] = set()  # approved here, beyond the prefix
        self.prefix = 0
        self.seen = 0  # the highest index received
        # per token: the highest index seen and who sent it (the master's `Kick` that
        # starts token c at position c % n counts as the index before its first, from
        # that position's left neighbour), and our last
        self.top = [c + 1 - tokens for c in range(tokens)]
        self.top_from = [(c % n - 1) % n for c in range(tokens)]
        self.mine = [NEVER] * tokens
        self.sent = 0  # how many broadcasts we made
        self.generated = 0  # the highest index we broadcast
        self.ahead = 0  # not kept: a ring slave sends only when a token reaches it
        self.lost_after: list[int] = []  # senders whose messages went missing (to say)

    # --- the hot path --------------------------------------------------------------

    def take_msg(self, msg: Msg) -> None:
        """A broadcast message arrived (from a live member). The hot path: `_take` and
        `take_confirms` written out, and the value stored straight into `values`."""
        frm = msg.frm
        index = msg.index
        j = index - 1
        values = self.values
        if j < len(values.held):
            values.vals[j] = msg.value
            values.held[j] = 1
        else:
            values[index] = msg.value
        if index > self.seen:
            self.seen = index
        c = j % self.tokens
        if index > self.top[c]:
            self.top[c], self.top_from[c] = index, frm
        seq = msg.seq
        recv_upto = self.recv_upto
        if seq == recv_upto[frm] + 1 and not self.gap[frm]:
            recv_upto[frm] = seq
            if frm != self.me:  # ours were queued when we sent them
                self.unapproved[frm].append(index)
        elif seq > recv_upto[frm] and not self.gap[frm]:
            self.gap[frm] = True
            self.lost_after.append(frm)
        confirms = msg.confirms
        self.confirms_of[frm] = confirms
        confirmed = confirms[self.me]
        if confirmed > self.confirmed_by[frm]:
            self.confirmed_by[frm] = confirmed
        if msg.approved > self.approved_from[frm]:
            self.approved_from[frm] = msg.approved
            self.changed = True

    def answers(self, frm: int, index: int, seq: int) -> bool:
        """Whether *index*, broadcast by *frm* as its number *seq*, is the newest of its
        token (so the next sender answers it); noted as such. The rest of it waits for
        `take_msg`, which may then come after the answer is sent. A number we had
        already (sent again after a broken connection: `resend`) is never answered."""
        if seq <= self.heard[frm] or seq <= self.recv_upto[frm]:
            return False
        self.heard[frm] = seq
        c = (index - 1) % self.tokens
        top = self.top[c]
        if index > top:
            self.top[c], self.top_from[c] = index, frm
            return True
        return index == top

    def take_broadcasts(self, broadcasts: list[Msg | Msgs]) -> None:
        """`take_msg` or `take_msgs` each of *broadcasts*, in order."""
        for b in broadcasts:
            if isinstance(b, Msg):
                self.take_msg(b)
            else:
                self.take_msgs(b)

    def take_msgs(self, msgs: Msgs) -> None:
        """Several broadcasts arrived in one `Msgs`."""
        frm, take = msgs.frm, self._take
        for k, (index, value) in enumerate(zip(msgs.indices, msgs.values, strict=True)):
            take(frm, index, value, msgs.first + k)
        self.take_confirms(frm, msgs.confirms, msgs.approved)

    def _take(self, frm: int, index: int, value: float, seq: int) -> None:
        self.values[index] = value
        if index > self.seen:
            self.seen = index
        c = (index - 1) % self.tokens
        if index > self.top[c]:
            self.top[c], self.top_from[c] = index, frm
        if seq == self.recv_upto[frm] + 1 and not self.gap[frm]:
            self.recv_upto[frm] = seq
            if frm != self.me:  # ours were queued when we sent them
                self.unapproved[frm].append(index)
        elif seq > self.recv_upto[frm] and not self.gap[frm]:
            self.gap[frm] = True
            self.lost_after.append(frm)
        # (a number we hold already came in a catch-up as well: nothing new)

    def settle(self, recipients: Collection[int], senders: Collection[int]) -> None:
        """After a batch: approve what every one of *recipients* confirmed, approve for
        the positions that no longer send (up to what all *senders* confirmed), and
        advance the prefix."""
        n = self.n
        self.approve(self.recv_upto, recipients, senders)
        if self.changed:
            self.changed = False
            done, popped = self.done, self.popped
            for p in range(n):
                q = self.unapproved[p]
                bound = self.approved_from[p]
                while q and popped[p] < bound:
                    done.add(q.popleft())
                    popped[p] += 1
            prefix = self.prefix
            while prefix + 1 in done:
                prefix += 1
                done.discard(prefix)
            self.prefix = prefix

    def generate(self, index: int, value: float) -> int:
        """We broadcast *index*: its number (`Msg.seq`). We hold it from now (it comes
        back to us too, and that is when we confirm it to ourselves)."""
        values, j = self.values, index - 1
        if j < len(values.held):
            values.vals[j] = value
            values.held[j] = 1
        else:
            values[index] = value
        self.unapproved[self.me].append(index)
        self.sent += 1
        if index > self.generated:
            self.generated = index
        self.mine[(index - 1) % self.tokens] = index
        return self.sent

    def owed(self, senders: Collection[int]) -> list[int]:
        """What we must send after the ring changed (a member died, or what it sent
        was relayed): for each token, the answer to the highest index seen of it, if
        we come first after its sender among the *senders* and have not answered it
        (nor sent that index ourselves).

        Two members can never both owe one answer (the next sender after a position
        is one member), so a token lost with a dead member is made again exactly
        once; an index may then be sent twice (by the dead and by us) with the same
        value, which costs nothing.
        """
        n, owed = self.n, []
        for c, (top, s) in enumerate(zip(self.top, self.top_from, strict=True)):
            after = next((p % n for p in range(s + 1, s + n + 1) if p % n in senders), -1)
            if after == self.me and self.mine[c] < top:
                owed.append(top + self.tokens)
        return owed

    def missing(self, count: int) -> list[int]:
        """The indices of 1..*count* that never reached this slave."""
        values = self.values
        return [i for i in range(1, count + 1) if i not in values]

    def value_of(self, index: int) -> float | None:
        return self.values.get(index)

    def store(self, indices: list[int], values: list[float]) -> None:
        """Messages fetched from another slave, for the result only (the books of who
        confirmed and approved what are over)."""
        for i, v in zip(indices, values, strict=True):
            self.values.setdefault(i, v)

    # --- a connection broke: send again ----------------------------------------------

    def resend(self, to: int) -> Msgs:
        """Our broadcasts that member *to* may not hold (one past what it confirmed to
        us, on), with our confirmations and approval: after our connection to it broke."""
        popped = self.popped[self.me]
        first = max(self.confirmed_by[to], popped) + 1
        indices = list(self.unapproved[self.me])[first - popped - 1 :]
        values = [self.values[i] for i in indices]
        return Msgs(self.me, first, indices, values, list(self.recv_upto), self.my_approved)

    # --- a member died: relay what it sent -------------------------------------------

    def relay(self, dead: int) -> Relay:
        """What we hold of *dead*'s messages beyond what it approved, for the others."""
        indices = list(self.unapproved[dead])
        values = [self.values[i] for i in indices]
        return Relay(dead, self.popped[dead] + 1, indices, values)

    def take_relay(self, relay: Relay) -> None:
        d = relay.frm
        for i, v in zip(relay.indices, relay.values, strict=True):
            self.values.setdefault(i, v)
            self.seen = max(self.seen, i)
            c = (i - 1) % self.tokens
            if i > self.top[c]:
                self.top[c], self.top_from[c] = i, d
        self._extend(d, relay.first, relay.indices)
        self.changed = True

    def _extend(self, p: int, first: int, indices: list[int]) -> None:
        """p's broadcasts numbered *first*, *first* + 1, …: add those beyond ours. What
        anyone holds of p starts no later than one past what we hold (what p approved
        every member had confirmed), so ours stay without a gap."""
        end = self.popped[p] + len(self.unapproved[p])  # the last number we hold
        if first > end + 1:
            return  # cannot happen (see above); never make a gap
        self.unapproved[p].extend(indices[end + 1 - first :])
        held = max(end, first + len(indices) - 1)
        if held > self.recv_upto[p]:
            self.recv_upto[p] = held
            self.gap[p] = False

    # --- a member rejoins: tell it everything ------------------------------------------

    def catch_up(self) -> Iterator[CatchUp | CaughtUp]:
        """Everything we know, for a member that rejoins."""
        items = list(self.values.items())
        for start in range(0, len(items), CATCH_UP_CHUNK):
            chunk = items[start : start + CATCH_UP_CHUNK]
            yield CatchUp([i for i, _ in chunk], [v for _, v in chunk])
        yield CaughtUp(
            self.me,
            self.sent,
            list(self.recv_upto),
            list(self.approved_from),
            self.prefix,
            list(self.popped),
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
        self.confirms_of[q] = part.confirms
        for p, a in enumerate(part.approved_from):
            if a > self.approved_from[p]:
                self.approved_from[p] = a
        if part.prefix > self.prefix:
            self.prefix = part.prefix
            self.done = {i for i in self.done if i > part.prefix}
        self.done.update(i for i in part.done if i > self.prefix)
        for p, indices in enumerate(part.unapproved):
            # q's view of p, if it reaches further than ours (q's own always does: it
            # names every message q sent before it sent this; the next come to us)
            if part.popped[p] + len(indices) > self.popped[p] + len(self.unapproved[p]):
                self.popped[p] = part.popped[p]
                self.unapproved[p] = deque(indices)
                self.recv_upto[p] = max(self.recv_upto[p], part.popped[p] + len(indices))
        self.recv_upto[q] = max(self.recv_upto[q], part.sent)
        self.changed = True
