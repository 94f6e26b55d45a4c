"""One simulated node's event loop: asyncio's own, on a virtual clock, never blocking.

`SimLoop` is asyncio's `BaseEventLoop` with three things replaced: its clock reads the
world's virtual time (through this node's drift: ``offset + rate * world time``), its
selector never waits (the world decides when time passes), and its network calls
(`create_connection`, `create_server`, and multicast for discovery) hand the runtime's
own protocols in-memory pipes of the world's network (``net.py``). Everything else —
tasks, futures, timers, call_soon's order — is asyncio's code, untouched.

The world steps a loop by one iteration (`step`) when it has something due; a paused
node is simply not stepped, a crashed one never again. Work costs virtual time: after
a step the loop is busy for a while set by how many callbacks it ran (`cost`), so a
node that computes flat out cannot freeze the clock. A stall (`stall_for`) is one long
turn: the next iteration that runs a timer's callback takes that much longer, and what
it had scheduled (a task it woke, say) runs before what arrived meanwhile, as on a
real loop after a long callback or a GC pause. The loop also offers the seams
of `cloudy.clock`: a wall clock, a CPU clock and the seeded `cloudy_random`.

No thread, no executor: `run_in_executor` runs the function at once, in the loop.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import math
import random
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import WorldView

__all__ = ["SimLoop"]

# Virtual seconds one loop iteration costs, and each callback it runs.
STEP_COST = 2e-6
CALLBACK_COST = 4e-6
# ... and each byte it reads or writes (the codec's and the kernel's work).
BYTE_COST = 5e-8
# The virtual epoch (seconds since 1970) at world time 0: 2026-01-01.
EPOCH = 1_767_225_600.0


class _NoSelector:
    """asyncio's loop asks its selector for events with a timeout: there are none, at once."""

    def select(self, timeout: float | None = None) -> list[Any]:
        return []

    def close(self) -> None:
        pass


class SimLoop(asyncio.BaseEventLoop):
    """A node's loop in the world: virtual clock, in-memory network, seeded chance."""

    if TYPE_CHECKING:  # asyncio's own, which its stubs leave out
        _ready: collections.deque[asyncio.Handle]
        _scheduled: list[asyncio.TimerHandle]
        _timer_cancelled_count: int

        def _run_once(self) -> None: ...

    def __init__(
        self,
        world: WorldView,
        name: str,
        host: str,
        *,
        rate: float = 1.0,
        offset: float = 0.0,
        speed: float = 1.0,
    ) -> None:
        super().__init__()
        self.world = world
        self.name = name
        self.host = host  # the simulated host this node runs on
        self.rate = rate  # clock drift: this loop's seconds per world second
        self.offset = offset
        self.speed = speed  # CPU speed: 0.5 takes twice as long per callback
        self._selector = _NoSelector()
        self._clock_resolution = 1e-9
        self._thread_id = threading.get_ident()  # "running" whenever the world steps it
        self.bytes = 0  # read and written in the current step (charged by `step`)
        self.busy_until = 0.0  # world time before which this loop's CPU is taken
        self.paused = False
        self.crashed = False
        self.stall_for = 0.0  # the next iteration that runs a timer takes this long more
        self.cpu_used = 0.0
        self.steps = 0
        #: `cloudy.clock`'s source of chance for this node (drawn from the world's seed)
        self.cloudy_random = random.Random(world.rng.getrandbits(64))
        self.set_exception_handler(self._unhandled)

    def __repr__(self) -> str:
        return f"<SimLoop {self.name} t={self.time():.6f}>"

    # --- the clock ---------------------------------------------------------------------

    def time(self) -> float:
        return self.offset + self.rate * self.world.now

    def world_time(self, when: float) -> float:
        """The world time at which this loop's clock reads *when* (or just after)."""
        t = (when - self.offset) / self.rate
        while self.offset + self.rate * t < when:
            t = math.nextafter(t, math.inf)
        return t

    def cloudy_wall(self) -> float:
        return EPOCH + self.time()

    def cloudy_cpu(self) -> float:
        return self.cpu_used

    # --- stepping ------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """The world time at which this loop has something to run, or None (idle)."""
        busy = self.busy_until
        if self._ready:
            now = self.world.now
            return busy if busy > now else now
        scheduled = self._scheduled
        while scheduled and scheduled[0]._cancelled:
            self._timer_cancelled_count -= 1
            heapq.heappop(scheduled)._scheduled = False  # type: ignore[attr-defined]
        if not scheduled:
            return None
        when = scheduled[0].when()
        if self.rate != 1.0 or self.offset:
            when = self.world_time(when)
        return busy if busy > when else when

    def step(self) -> None:
        """Run one iteration of the loop, as `run_forever` would, and charge its cost."""
        work = len(self._ready)
        scheduled = self._scheduled
        end = self.time() + self._clock_resolution
        timers = len([h for h in scheduled[:8] if h.when() < end])
        work += timers
        asyncio.events._set_running_loop(self)
        try:
            self._run_once()
        finally:
            asyncio.events._set_running_loop(None)
        cost = (STEP_COST + CALLBACK_COST * work + BYTE_COST * self.bytes) / self.speed
        if self.stall_for and timers:  # (a long turn: virtual time, not CPU speed)
            cost += self.stall_for
            self.world.record("stalled", self.name, self.stall_for)
            self.stall_for = 0.0
        self.bytes = 0
        self.cpu_used += cost
        self.steps += 1
        self.busy_until = self.world.now + cost

    # --- what asyncio's base loop leaves to its subclasses -------------------------------

    def _process_events(self, event_list: list[Any]) -> None:
        pass

    def _write_to_self(self) -> None:
        pass

    def run_in_executor(  # type: ignore[override]
        self, executor: Any, func: Callable[..., Any], *args: Any
    ) -> asyncio.Future[Any]:
        """No threads in a simulation: *func* runs at once and its future is done."""
        future = self.create_future()
        try:
            future.set_result(func(*args))
        except BaseException as e:  # (it is the caller's to see, as from a thread)
            future.set_exception(e)
        return future

    def _unhandled(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.world.unhandled(self, context)

    # --- the network, through the world ----------------------------------------------

    async def create_connection(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: Any = None,
        **_: Any,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        if ssl:
            raise NotImplementedError("TLS is not simulated")
        assert host is not None and port is not None
        return await self.world.connect(self, protocol_factory, host, int(port))

    async def create_server(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: Any = None,
        **_: Any,
    ) -> asyncio.AbstractServer:
        if ssl:
            raise NotImplementedError("TLS is not simulated")
        assert isinstance(host, str)
        server: asyncio.AbstractServer = self.world.listen(
            self, protocol_factory, host, int(port or 0)
        )
        return server

    # --- multicast, for discovery (``backend/discovery.py`` asks for these) -------------

    async def cloudy_multicast_join(
        self, group: str, port: int, interface: str, factory: Callable[[], Any]
    ) -> tuple[asyncio.DatagramTransport, Any]:
        """A member of *group*:*port* on *interface*: what is sent to the group."""
        end, protocol = self.world.multicast_join(self, group, port, interface, factory)
        return end, protocol

    async def cloudy_multicast_open(
        self, interface: str, factory: Callable[[], Any]
    ) -> tuple[asyncio.DatagramTransport, Any]:
        """A datagram endpoint on *interface*, on a port of its own (to ask and be answered)."""
        end, protocol = self.world.multicast_open(self, interface, factory)
        return end, protocol
