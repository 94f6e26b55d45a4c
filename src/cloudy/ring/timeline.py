"""A run's timeline: each slave's agreed count over time, the phases and the faults.

A slave samples its *approved prefix* (every index 1..prefix is approved here: held
by every live member, and so what the cut is made of; confirmations alone say only
that its own messages arrived) every `SAMPLE_EVERY` seconds, on the event loop's
timer: nothing is added per message, and a busy slave's sample is only late, never
lost. Times count from the slave's `Setup`; when the cut is decided the last sample
is the cut itself. The slave sends its `Timeline` with its `Outcome`; the master,
which noted when it sent each `Setup`, moves the times onto the run's clock
(seconds since the run began, as the master sees it; a message's latency, well
under a sample interval, is the error). A slave of an older cloudy sends none:
its `Timeline` is None ("not collected").

The master notes the phases and the faults it sees as `Event`s on the same clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec

from .. import clock

__all__ = ["MAX_SAMPLES", "SAMPLE_EVERY", "Event", "Sampler", "Timeline"]

SAMPLE_EVERY = 0.05
# Past this many samples, every other one is dropped and the interval doubles: a long
# run's timeline stays small (about 30 kB at most on the wire).
MAX_SAMPLES = 2000


class Timeline(msgspec.Struct, frozen=True):
    """A slave's agreed count over time: *agreed[k]* messages at *at[k]* seconds."""

    at: list[float]
    agreed: list[int]

    def shifted(self, by: float) -> Timeline:
        """The same samples, *by* seconds later (onto another clock)."""
        return Timeline([round(t + by, 4) for t in self.at], self.agreed)


class Event(msgspec.Struct, frozen=True):
    """What happened *at* seconds into the run: a phase began (``START``, ``SEND``,
    ``GRACE``, ``STOP``), the results were in (``END``), or slave *node* was ``lost``,
    ``rejoined`` the run, or came back too ``late`` to rejoin it."""

    what: str
    at: float
    node: str = ""


class Sampler:
    """Samples *count()* now and every *every* s after, on the running event loop's
    timer, until `stop`."""

    def __init__(self, count: Callable[[], int], every: float = SAMPLE_EVERY) -> None:
        self.count = count
        self.every = every
        self.start = clock.now()
        self.at: list[float] = []
        self.agreed: list[int] = []
        self.loop = asyncio.get_running_loop()
        self.timer: asyncio.TimerHandle | None = None
        self._tick()

    def _sample(self, count: int) -> None:
        self.at.append(round(clock.now() - self.start, 4))
        self.agreed.append(count)

    def _tick(self) -> None:
        self._sample(self.count())
        if len(self.at) >= MAX_SAMPLES:  # keep the first and every other one after it
            del self.at[1::2], self.agreed[1::2]
            self.every *= 2
        self.timer = self.loop.call_later(self.every, self._tick)

    def stop(self, final: int | None = None) -> Timeline:
        """Stop sampling; *final* (the cut, once decided) is the last sample."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if final is not None:
            self._sample(final)
        return Timeline(self.at, self.agreed)
