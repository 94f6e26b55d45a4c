"""A slave's connections to the other members: a broken one is made again, and what
was lost on it is sent again.

The transport never leaves a hole in one process's messages to another: once the
connection to a node breaks, what our process sends to it is dropped (logged) until
we `reconnect`. A connection can break while both ends live — reset by a middlebox,
a damaged frame, a one-way cut that heals — and the master, connected to both, sees
nothing: the member that missed our broadcasts would never confirm them, and a
token lost on the way would never come round again.

So every slave monitors the others' ring processes. A `DiedDisconnect` for one that
is still a member (the master says who is: a dead one is left out by it) arms a timer;
when it fires (`Relink`, at once the first time), the slave reconnects, monitors
again and sends that member again everything of its own it may not hold (from one
past what it last confirmed to us: a receiver takes a number it holds as nothing
new, and answers a token it holds no second time), then its own confirmations. If
the member is unreachable the monitor fires again at once and the next timer waits
twice as long (up to `LATEST`), until the master leaves it out.
"""

from __future__ import annotations

import asyncio

from .. import (
    DiedDisconnect,
    ProcessId,
    ProcessMonitorNotification,
    clock,
    get_self_pid,
    monitor,
    reconnect,
    say,
    send,
    spawn_local,
)
from .protocol import Relink

__all__ = ["EARLIEST", "LATEST", "PeerLinks"]

# The wait before the second attempt after a break (the first is at once: a reset
# peer is there to dial), and the longest wait between attempts.
EARLIEST = 0.02
LATEST = 1.0


async def _relink_after(me: ProcessId, after: float, position: int, pid: ProcessId) -> None:
    await asyncio.sleep(after)
    send(me, Relink(position, pid))


class PeerLinks:
    """Which members' ring processes a slave watches, and the state of each link."""

    def __init__(self, me: int) -> None:
        self.me = me
        self.pid = get_self_pid()
        self.watched: dict[ProcessId, int] = {}  # ring process -> its position
        self.wait: dict[int, float] = {}  # position -> the last attempt's delay
        self.last: dict[int, float] = {}  # position -> when we last made its link
        self.pending: set[int] = set()  # positions whose `Relink` is on its way
        self.relinked = 0  # links made again (for the tests)

    def watch(self, peers: list[ProcessId], alive: set[int]) -> None:
        """Monitor every live member's ring process not watched yet."""
        for p in sorted(alive):
            pid = peers[p]
            if p != self.me and pid not in self.watched:
                self.watched[pid] = p
                monitor(pid)

    def broken(self, note: ProcessMonitorNotification, alive: set[int]) -> bool:
        """Whether *note* is about a member's process (and so taken here); a broken
        connection to a live member arms its `Relink`."""
        p = self.watched.pop(note.pid, None)
        if p is None:
            return False
        if type(note.reason) is DiedDisconnect and p in alive and p not in self.pending:
            after = self.wait.get(p, 0.0)
            if clock.now() - self.last.get(p, -LATEST) > 2 * LATEST:
                after = 0.0  # it held a while: a new break
                say(f"the connection to position {p} broke: making it again")
            delay = min(LATEST, 2 * after) if after else 0.0  # the first try at once
            self.wait[p] = delay or EARLIEST / 2
            self.pending.add(p)
            spawn_local(_relink_after, self.pid, delay, p, note.pid)
        return True

    def relink(self, msg: Relink, peers: list[ProcessId], alive: set[int]) -> bool:
        """On our timer: whether to send member *msg.position* again what it may lack
        (it is still a member, with the same ring process); the link is made again."""
        p = msg.position
        self.pending.discard(p)
        if p not in alive or peers[p] != msg.pid or msg.pid in self.watched:
            return False
        reconnect(msg.pid.node)
        self.watched[msg.pid] = p
        monitor(msg.pid)  # (fires at once if the node is still out of reach)
        self.last[p] = clock.now()
        self.relinked += 1
        return True
