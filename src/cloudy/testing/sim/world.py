"""The world: one virtual clock, one seeded generator, the nodes' loops and the network,
stepped in virtual-time order.

`World.step` runs whatever is due first: a network event (a segment's arrival, a
fault) or the loop whose next callback or timer is earliest. Time jumps straight to
that moment — a cluster waiting on heartbeats or phase timeouts costs nothing — and
when several loops are due at once the seed picks which runs first, which is how
different seeds explore different interleavings. Every choice is the seed's: with
the same seed, fault plan and code, a run is the same, event for event, and its
`Trace` has the same digest.

What the trace holds (each with its virtual time): every read of bytes by a node (its
length and CRC), each listen, fault and damaged segment, and whatever the layers
above record (process ends, results). Log lines are kept beside it, stamped with the
virtual time and the node, but not digested: they are for people.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .datagram import Datagrams
from .loop import SimLoop
from .net import Network

__all__ = ["Latency", "SimTimeout", "Trace", "World"]

log = logging.getLogger("cloudy.sim")


class SimTimeout(Exception):
    """A simulated run did not finish within its virtual-time limit (or deadlocked)."""


@dataclass(frozen=True)
class Latency:
    """One-way delay of a segment: *base* seconds plus an exponential *jitter* (its
    mean), and now and then (*spike_chance*) a delay of up to *spike* more."""

    base: float = 0.0002
    jitter: float = 0.0001
    spike_chance: float = 0.0
    spike: float = 0.05

    def __str__(self) -> str:
        return f"{self.base * 1e3:g}ms+exp({self.jitter * 1e3:g}ms)" + (
            f", {self.spike_chance:.0%} spikes to {self.spike * 1e3:g}ms"
        ) * (self.spike_chance > 0)


@dataclass
class Trace:
    """What happened in a run, in order, and its digest."""

    events: list[tuple[float, str, tuple[Any, ...]]] = field(default_factory=list)
    _hash: Any = field(default_factory=lambda: hashlib.blake2b(digest_size=16))

    def add(self, at: float, kind: str, fields: tuple[Any, ...]) -> None:
        self.events.append((at, kind, fields))
        self._hash.update(f"{at!r} {kind} {fields!r}\n".encode())

    @property
    def digest(self) -> str:
        return str(self._hash.hexdigest())

    def lines(self, kinds: frozenset[str] | None = None) -> list[str]:
        return [
            f"{at:12.6f} {kind:<8} " + " ".join(map(str, fields))
            for at, kind, fields in self.events
            if kinds is None or kind in kinds
        ]


class World:
    """Virtual time, chance and the network shared by every simulated node."""

    def __init__(self, seed: int, *, latency: Latency | None = None) -> None:
        import random

        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.latency_of = latency or Latency()
        self.slow: dict[tuple[str, str], float] = {}  # extra delay per path (a fault)
        self.loops: list[SimLoop] = []
        self.net = Network(self)
        self.datagrams = Datagrams(self, lambda src, dst: (src, dst) in self.net.cut_paths)
        self.trace = Trace()
        self.logs: list[str] = []
        self.errors: list[str] = []  # exceptions no one handled, in a live node's loop
        self.steps = 0
        self._events: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0

    # --- parts ---------------------------------------------------------------------------

    def loop(self, name: str, host: str, **clock: float) -> SimLoop:
        """A new loop for a node called *name* on *host* (*rate*, *offset*, *speed*)."""
        loop = SimLoop(self, name, host, **clock)
        self.loops.append(loop)
        return loop

    def latency(self, src: str, dst: str) -> float:
        lat, rng = self.latency_of, self.rng
        delay = lat.base + rng.expovariate(1 / lat.jitter) if lat.jitter else lat.base
        if lat.spike_chance and rng.random() < lat.spike_chance:
            delay += rng.random() * lat.spike
        return delay + self.slow.get((src, dst), 0.0)

    async def connect(
        self, loop: Any, factory: Callable[[], Any], host: str, port: int
    ) -> tuple[Any, Any]:
        return await self.net.connect(loop, factory, host, port)

    def listen(self, loop: Any, factory: Callable[[], Any], host: str, port: int) -> Any:
        return self.net.listen(loop, factory, host, port)

    def multicast_join(
        self, loop: Any, group: str, port: int, interface: str, factory: Callable[[], Any]
    ) -> tuple[Any, Any]:
        return self.datagrams.join(loop, group, port, interface, factory)

    def multicast_open(
        self, loop: Any, interface: str, factory: Callable[[], Any]
    ) -> tuple[Any, Any]:
        return self.datagrams.open(loop, interface, factory)

    def record(self, kind: str, *fields: Any) -> None:
        self.trace.add(self.now, kind, fields)

    def unhandled(self, loop: SimLoop, context: dict[str, Any]) -> None:
        if loop.crashed:
            return  # its tasks are dropped with it, as with kill -9
        exc = context.get("exception")
        line = f"{self.now:.6f} {loop.name}: {context.get('message')}" + (
            f": {type(exc).__name__}: {exc}" if exc is not None else ""
        )
        self.errors.append(line)

    # --- events and stepping ---------------------------------------------------------------

    def at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run *fn(*args)* at world time *when* (in the order asked, at equal times)."""
        self._seq += 1
        heapq.heappush(self._events, (max(when, self.now), self._seq, fn, args))

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def step(self) -> bool:
        """Run the next thing due; False when nothing is left to run, ever."""
        events = self._events
        if events and events[0][0] <= self.now:  # (due already: before any loop)
            _, _, fn, args = heapq.heappop(events)
            fn(*args)
            return True
        best_t, best = math.inf, []
        for loop in self.loops:
            if loop.paused or loop.crashed:
                continue
            t = loop.next_due()
            if t is None or t > best_t:
                continue
            if t < best_t:
                best_t, best = t, [loop]
            else:
                best.append(loop)
        if events and events[0][0] <= best_t:
            when, _, fn, args = heapq.heappop(events)
            self.now = max(self.now, when)
            fn(*args)
            return True
        if not best:
            return False
        self.now = max(self.now, best_t)
        loop = best[0] if len(best) == 1 else best[self.rng.randrange(len(best))]
        self.steps += 1
        loop.step()
        return True

    def run_until(self, done: Callable[[], bool], *, limit: float) -> None:
        """Step until *done()*; `SimTimeout` past world time *limit* or when all is idle."""
        while not done():
            if self.now > limit:
                raise SimTimeout(f"not done by virtual time {limit:g}s")
            if not self.step():
                raise SimTimeout(f"everything idle at virtual time {self.now:g}s, not done")

    def run_for(self, seconds: float) -> None:
        """Step until the world's clock has advanced by *seconds*."""
        end = self.now + seconds
        reached: list[bool] = []
        self.at(end, reached.append, True)  # (time reaches *end* even if all is idle)
        while not reached and self.step():
            pass
