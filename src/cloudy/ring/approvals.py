"""Confirmations and approvals, counted per sender: the part of a slave's books that
every model keeps alike (sans-IO).

Each member numbers its messages 1, 2, 3, …; per position p, ``confirmed_by[p]``
is how many of ours p has confirmed, ``approved_from[p]`` how many of its own p
approved, and ``confirms_of[p]`` p's latest confirmations of everyone. A model's
books subclass `Approvals`, keep what they hold, and call `approve` after each
batch with how many of each sender's messages they hold.
"""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["Approvals"]


class Approvals:
    """Who confirmed and approved what, over a ring of *n* positions; *me* is ours."""

    def __init__(self, n: int, me: int) -> None:
        self.n = n
        self.me = me
        self.confirmed_by = [0] * n
        self.approved_from = [0] * n
        self.confirms_of: list[list[int]] = [[0] * n for _ in range(n)]  # p's latest
        self.my_approved = 0
        self.changed = False  # approvals changed since the books last looked

    def take_confirms(self, frm: int, confirms: list[int], approved: int) -> None:
        """*frm*'s confirmations (of every position's messages) and its own approval."""
        self.confirms_of[frm] = confirms
        c = confirms[self.me]
        if c > self.confirmed_by[frm]:
            self.confirmed_by[frm] = c
        if approved > self.approved_from[frm]:
            self.approved_from[frm] = approved
            self.changed = True

    def approve(
        self, held: list[int], recipients: Collection[int], senders: Collection[int]
    ) -> None:
        """We hold *held[p]* of each position's messages: approve ours that every one of
        *recipients* confirmed, and approve for the positions that no longer send (up
        to what all *senders* confirmed)."""
        n, me = self.n, self.me
        confirmed_by = self.confirmed_by
        confirmed_by[me] = held[me]
        self.confirms_of[me] = held  # ours as they are now
        if len(recipients) == n:
            low = min(confirmed_by)
        else:
            low = min(confirmed_by[p] for p in recipients)
        if low > self.my_approved:
            self.my_approved = self.approved_from[me] = low
            self.changed = True
        if len(senders) < n and senders:
            for d in range(n):
                if d not in senders:
                    proxy = min(self.confirms_of[p][d] for p in senders)
                    if proxy > self.approved_from[d]:
                        self.approved_from[d] = proxy
                        self.changed = True
