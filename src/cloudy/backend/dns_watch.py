"""Asking a DNS name for the cluster's peers, again and again, for a node's backend.

A `DnsWatch` keeps the last good answer (`peers`). A new peer in it is reached at once
(``on_new``: the backend connects to it and says when it is no cloudy node); a peer
gone from DNS is only logged — a record vanishing is a hint, never a death: the
node's connection and heartbeat decide that. A lookup that fails is logged (the first
failure at once, then once a minute while it goes on, and the recovery) and changes
nothing: the peers known stay known, and the formed cluster goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .. import NodeId, clock
from .dns import DEFAULT_INTERVAL, DnsError, Lookup

__all__ = ["FIRST_INTERVAL", "DnsWatch"]

log = logging.getLogger("cloudy.backend.dns")

#: How often the name is asked until an answer names a peer (then every `interval`).
FIRST_INTERVAL = 1.0
#: While lookups keep failing, one log line per this many seconds.
REPEAT_LOG = 60.0


class DnsWatch:
    """Polls *name* (records at *port* unless SRV says otherwise) every *interval* s."""

    def __init__(
        self,
        name: str,
        port: int,
        lookup: Lookup,
        *,
        interval: float = DEFAULT_INTERVAL,
        on_new: Callable[[NodeId], None] | None = None,
    ) -> None:
        self.name, self.port, self.interval = name, port, interval
        self._lookup = lookup
        self._on_new = on_new
        self.peers: list[NodeId] = []  # the last good answer, in the records' order
        self.lookups = 0  # lookups done, failed ones included
        self.failures = 0  # lookups failed in a row
        self.error: str | None = None  # why the last lookup failed, while it did
        self._answered: asyncio.Event | None = None
        self._logged_at = -REPEAT_LOG

    def describe(self) -> str:
        return f"DNS name {self.name} (every {self.interval:g} s)"

    async def first_answer(self, seconds: float) -> None:
        """Return once a lookup has been done (or failed), or after *seconds*."""
        if self._answered is None:
            self._answered = asyncio.Event()
        if self.lookups == 0:
            try:
                await asyncio.wait_for(self._answered.wait(), seconds)
            except TimeoutError:
                pass

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll()
            await asyncio.sleep(self.interval if self.peers else min(FIRST_INTERVAL, self.interval))

    async def poll(self) -> None:
        """One lookup: update `peers` from a good answer, log what changed or failed."""
        try:
            records = await self._lookup(self.name, self.port)
        except DnsError as e:
            self._failed(str(e))
        else:
            if self.failures:
                log.warning(
                    "DNS discovery: %s answers again (after %d failed lookups)",
                    self.name,
                    self.failures,
                )
            self.failures, self.error = 0, None
            self._update([NodeId(r.host, r.port) for r in records])
        finally:
            self.lookups += 1
            if self._answered is not None:
                self._answered.set()

    def _failed(self, why: str) -> None:
        self.failures += 1
        self.error = why
        now = clock.now()
        if self.failures == 1 or now - self._logged_at >= REPEAT_LOG:
            self._logged_at = now
            count = len(self.peers)
            known = (
                f"keeping the {count} peer{'s' * (count != 1)} known" if count else "no peers yet"
            )
            again = "" if self.failures == 1 else f" ({self.failures} lookups in a row)"
            log.warning("DNS discovery: %s%s; %s", why, again, known)

    def _update(self, peers: list[NodeId]) -> None:
        old, new = set(self.peers), set(peers)
        added = [p for p in peers if p not in old]
        gone = [p for p in self.peers if p not in new]
        self.peers = list(dict.fromkeys(peers))
        if added:
            log.info("DNS discovery: %s names %s", self.name, _addresses(added))
        if gone:
            log.warning(
                "DNS discovery: %s no longer names %s (a hint only: their connections decide)",
                self.name,
                _addresses(gone),
            )
        if self._on_new is not None:
            for peer in added:
                self._on_new(peer)


def _addresses(peers: list[NodeId]) -> str:
    return ", ".join(f"{p.host}:{p.port}" for p in peers)
