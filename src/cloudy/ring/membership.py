"""The ring's members as the master sees them (a part of the master, `master.py`).

A slave that dies is left out: the others are told (`Members`) and close the ring
around it, while a majority of the senders lives. A new ring process for a lost
position (its node came back) says `Hello`; during SEND and GRACE, for a model that
rejoins, it is given a `Setup` naming the members and the phase, and once `Ready`
it rejoins as a passive member.

It keeps the run's clock (seconds since *started*): when each position's latest
`Setup` was sent (a slave's timeline counts from it), and the phases and faults as
`Event`s.
"""

from __future__ import annotations

import msgspec

from .. import CloudyError, ProcessId, ProcessMonitorNotification, clock, monitor, say, send
from .protocol import Hello, Members, Phase, PhaseName, Ready, Setup
from .timeline import Event

STOP = PhaseName.STOP

__all__ = ["ExperimentError", "Membership"]


class ExperimentError(CloudyError):
    """The run could not finish: a slave died, did not answer, or could not be spawned."""


class Membership:
    """The ring's members as the master sees them; a death closes the ring around the
    dead one (`Members` to the others) while a majority of the senders lives, and a
    new ring process for a lost position rejoins it (passive) during SEND and GRACE."""

    def __init__(
        self, ring: list[ProcessId], setup: Setup, rejoins: bool, started: float, names: list[str]
    ) -> None:
        self.ring = ring
        self.setup = setup
        self.rejoins = rejoins
        self.alive = set(range(len(ring)))
        self.passive: set[int] = set()  # rejoined: receive, but carry no token
        self.lost: set[int] = set()
        self.refs = {monitor(pid): pos for pos, pid in enumerate(ring)}
        self.rejoining = False  # whether a new ring process may rejoin now
        self.phase = PhaseName.START
        self.joining: dict[int, ProcessId] = {}  # sent a Setup, awaiting its Ready
        self.started, self.names = started, names
        self.events = [Event("START", 0.0)]
        self.setup_at = [0.0] * len(ring)  # when each position's latest Setup was sent

    def now(self) -> float:
        """Seconds since the run began."""
        return round(clock.now() - self.started, 4)

    def note(self, what: str, pos: int | None = None) -> None:
        """An `Event` now: a phase, or what happened to the slave at *pos*."""
        self.events.append(Event(what, self.now(), "" if pos is None else self.names[pos]))

    def died(self, note: ProcessMonitorNotification, answered: set[int]) -> None:
        pos = self.refs.pop(note.ref, None)
        self.joining = {p: pid for p, pid in self.joining.items() if pid != note.pid}
        if pos is None or pos not in self.alive or pos in answered:
            return  # not a slave, already known, or it ended after its last answer
        self.alive.discard(pos)
        self.passive.discard(pos)
        self.lost.add(pos)
        self.note("lost", pos)
        senders = len(self.alive - self.passive)
        if senders < len(self.ring) // 2 + 1:
            raise ExperimentError(
                f"slave process {note.pid} ended ({note.reason!r}): "
                f"{senders} of {len(self.ring)} slaves left, not a majority"
            )
        self._tell()

    def hello(self, msg: Hello) -> None:
        """A ring process started: a new one for a lost position is given a `Setup`."""
        pos = msg.position
        if pos in self.alive or pos >= len(self.ring):
            return  # the first start
        if self.phase is PhaseName.STOP:  # too late to rejoin: it may still finish late
            ring = list(self.ring)
            ring[pos] = msg.pid
            late = [*sorted(self.alive), pos]
            setup = msgspec.structs.replace(
                self.setup, peers=ring, position=pos, alive=late, passive=[pos], phase=STOP
            )
            self.note("late", pos)
            send(msg.pid, setup)
            self.setup_at[pos] = self.now()
            return
        if not (self.rejoins and self.rejoining):
            return  # this model does not rejoin, or the run is settling
        ring = list(self.ring)
        ring[pos] = msg.pid
        self.joining[pos] = msg.pid
        self.refs[monitor(msg.pid)] = pos
        alive = sorted(self.alive | {pos})
        passive = sorted(self.passive | {pos})
        setup = msgspec.structs.replace(
            self.setup, peers=ring, position=pos, alive=alive, passive=passive, phase=self.phase
        )
        send(msg.pid, setup)
        self.setup_at[pos] = self.now()

    def ready(self, msg: Ready) -> bool:
        """A `Ready`: True if it is a rejoining process's (which then joins)."""
        pid = self.joining.pop(msg.position, None)
        if pid is None:
            return False
        pos = msg.position
        self.ring[pos] = pid
        self.alive.add(pos)
        self.passive.add(pos)
        self.lost.discard(pos)
        self.note("rejoined", pos)
        say(f"slave {msg.node} rejoins the ring at position {pos}")
        self._tell()
        send(pid, Phase(self.phase))  # answered like the others' (a collect may wait for it)
        return True

    def _tell(self) -> None:
        members = Members(sorted(self.alive), sorted(self.passive), list(self.ring))
        for p in self.alive:
            send(self.ring[p], members)

    def probe(self) -> ProcessId:
        return self.ring[min(self.alive - self.passive)]

    def take(self, msg: object, answered: set[int]) -> bool:
        """Handle a membership message; True if *msg* was one."""
        if isinstance(msg, ProcessMonitorNotification):
            self.died(msg, answered)
        elif isinstance(msg, Hello):
            self.hello(msg)
        elif isinstance(msg, Ready):
            return self.ready(msg)
        else:
            return False
        return True
