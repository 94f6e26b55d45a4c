"""Admission: how many accepted connections may wait in handshake, and how long, and how
the ones refused before they authenticate are reported (a summary, not a line each).

Theory of operation
-------------------
A peer that has not proved it knows the cookie costs us a file descriptor, a little
memory and, if we are careless, a log line; it must not be able to spend all of any.
`Admission` keeps the listener's connections still in handshake in arrival order: at
most ``cap`` of them (a named default, and never more than a quarter of the process's
soft limit on open files, so authenticated peers can always get one). A new one over
the cap drops the oldest; one still in handshake after ``timeout`` seconds is dropped
too. (Before authentication a connection also accepts only small frames: see
`cloudy.wire.framing.HANDSHAKE_MAX_FRAME`.)

Every refusal is counted, by kind and by address (and told to ``on_refused``, for
the node's counters, by its label in ``traffic.py``). The first one after a quiet spell
is logged at once; the rest are summed up in at most one line every ``every`` seconds:
how many, from where (the top few addresses), and why. A wrong cookie or protocol
version from a peer that got as far as a Hello is worth its own line (it is a
misconfiguration someone must fix): the first few per address per period get one, the
rest join the summary.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import resource
from collections.abc import Callable
from typing import Protocol

from . import traffic as T

__all__ = [
    "DEFAULT_MAX_PENDING_HANDSHAKES",
    "LISTEN_BACKLOG",
    "SUMMARY_EVERY",
    "Admission",
    "Pending",
    "Refusal",
    "listen_backlog",
    "pending_cap",
]

log = logging.getLogger("cloudy.transport")

# Connections in handshake at once: a cluster's nodes connecting at the same moment
# finish in milliseconds; a flood of idle connections is cut to this many. Above the
# largest full mesh (benchmarks/mesh.py: at 64, 128 nodes started together dropped
# handshakes about to finish and did not mesh in 60 s; at 256 they mesh in 3 s), and
# a quarter of a container's usual 1024 open files.
DEFAULT_MAX_PENDING_HANDSHAKES = 256
# The kernel's queue of connections not yet accepted; also how many asyncio accepts in
# one go, before any is admitted (so, like the cap, at most a quarter of the files).
LISTEN_BACKLOG = 1024
# Seconds between two summaries of refused connections.
SUMMARY_EVERY = 10.0
# Lines of their own for wrong cookies and versions, per address per summary period.
AUTH_LINES_PER_ADDRESS = 5
# Addresses named in a summary.
TOP_ADDRESSES = 3


class Refusal(enum.Enum):
    """Why an unauthenticated connection was closed; its value is its phrase in a summary."""

    TIMEOUT = "handshake timeouts"
    OVER_CAP = "dropped over the cap of {cap} pending"
    OVERSIZED = "frames over the handshake limit"
    MALFORMED = "not cloudy's handshake"
    AUTH = "wrong cookies or versions"


# Each drop's label among a node's counters (`Traffic.refused`); the handshake's own
# refusals (cookie, version, malformed, oversized) are counted by the connection.
_LABEL = {Refusal.TIMEOUT: T.HANDSHAKE_TIMEOUT, Refusal.OVER_CAP: T.OVER_CAP}


_ONE = {
    Refusal.TIMEOUT: "no handshake within {timeout:.1f} s",
    Refusal.OVER_CAP: "dropped over the cap of {cap} pending",
    Refusal.OVERSIZED: "a frame over the handshake limit",
    Refusal.MALFORMED: "not cloudy's handshake",
    Refusal.AUTH: "wrong cookie or version",
}


class Pending(Protocol):
    """What admission needs of a connection."""

    @property
    def peer_host(self) -> str: ...

    def abort(self, reason: str) -> None: ...


def pending_cap(wanted: int) -> int:
    """*wanted*, but at most a quarter of the soft limit on open files (and at least 1)."""
    return max(1, _quarter_of_files(wanted))


def listen_backlog() -> int:
    """`LISTEN_BACKLOG`, but at most a quarter of the soft limit on open files."""
    return max(16, _quarter_of_files(LISTEN_BACKLOG))


def _quarter_of_files(wanted: int) -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return wanted if soft == resource.RLIM_INFINITY else min(wanted, soft // 4)


class Admission:
    """The listener's connections in handshake, and the account of those refused."""

    def __init__(
        self,
        max_pending: int = DEFAULT_MAX_PENDING_HANDSHAKES,
        *,
        timeout: float,
        every: float = SUMMARY_EVERY,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.cap = pending_cap(max_pending)
        self._on_refused = on_refused
        self.timeout = timeout
        self.every = every
        self._pending: dict[Pending, asyncio.TimerHandle] = {}
        self._kinds: collections.Counter[Refusal] = collections.Counter()
        self._hosts: collections.Counter[str] = collections.Counter()
        self._auth_lines: collections.Counter[str] = collections.Counter()
        self._period: asyncio.TimerHandle | None = None
        self._since = 0.0
        self._closed = False

    def __repr__(self) -> str:
        return f"<Admission pending={len(self._pending)}/{self.cap} refused={self._kinds.total()}>"

    @property
    def pending(self) -> int:
        """Connections in handshake now."""
        return len(self._pending)

    # --- the connections in handshake ---------------------------------------------------

    def admit(self, conn: Pending) -> None:
        """*conn* was just accepted: make room for it, and give it ``timeout`` seconds."""
        while len(self._pending) >= self.cap:
            oldest = next(iter(self._pending))
            self._drop(oldest, Refusal.OVER_CAP, "too many connections in handshake")
        loop = asyncio.get_running_loop()
        self._pending[conn] = loop.call_later(self.timeout, self._expire, conn)

    def settle(self, conn: Pending) -> None:
        """*conn* is authenticated or closed: no longer pending (no-op if it was not)."""
        timer = self._pending.pop(conn, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, conn: Pending) -> None:
        if conn in self._pending:
            self._drop(conn, Refusal.TIMEOUT, "handshake timeout")

    def _drop(self, conn: Pending, kind: Refusal, reason: str) -> None:
        if self._on_refused is not None:
            self._on_refused(_LABEL[kind])
        self.settle(conn)
        self.refuse(conn.peer_host, kind)
        conn.abort(reason)

    # --- the account --------------------------------------------------------------------

    def refuse(self, host: str, kind: Refusal) -> None:
        """Count a connection from *host* closed before it authenticated."""
        if self._period is None:  # the first after a quiet spell: say so now
            self._start_period()
            log.warning(
                "refused an unauthenticated connection from %s (%s); "
                "further refusals are summarised every %.3g s",
                host,
                _ONE[kind].format(cap=self.cap, timeout=self.timeout),
                self.every,
            )
            return
        self._kinds[kind] += 1
        self._hosts[host] += 1

    def auth_failure(self, host: str, line: str) -> None:
        """Log *line* (a wrong cookie or version from *host*), unless *host* had its share."""
        if self._period is None:
            self._start_period()
        self._auth_lines[host] += 1
        if self._auth_lines[host] <= AUTH_LINES_PER_ADDRESS:
            log.warning("%s", line)
        else:
            self._kinds[Refusal.AUTH] += 1
            self._hosts[host] += 1

    def _start_period(self) -> None:
        if self._closed:  # a late refusal while closing: logged now, no later summary
            return
        loop = asyncio.get_running_loop()
        self._since = loop.time()
        self._period = loop.call_later(self.every, self._end_period)

    def _end_period(self) -> None:
        self._period = None
        self._auth_lines.clear()
        if self.flush():
            self._start_period()  # keep summarising while refusals go on

    def flush(self) -> bool:
        """Log the summary of the refusals not yet reported, if any; True if there were."""
        total = self._kinds.total()
        if not total:
            return False
        elapsed = asyncio.get_running_loop().time() - self._since
        top = self._hosts.most_common(TOP_ADDRESSES)
        where = ", ".join(f"{host} x{n}" for host, n in top)
        if len(self._hosts) > len(top):
            where += f", {len(self._hosts) - len(top)} more"
        why = ", ".join(self._phrase(kind, n) for kind, n in self._kinds.most_common())
        log.warning(
            "refused %d unauthenticated connections in the last %.3g s (from %s): %s",
            total,
            elapsed,
            where,
            why,
        )
        self._kinds.clear()
        self._hosts.clear()
        return True

    def _phrase(self, kind: Refusal, n: int) -> str:
        return f"{n} {kind.value.format(cap=self.cap)}"

    def close(self) -> None:
        """Forget the pending connections (the transport closes them); log what is left."""
        self._closed = True
        for conn in list(self._pending):
            self.settle(conn)
        if self._period is not None:
            self._period.cancel()
            self._period = None
        self.flush()
