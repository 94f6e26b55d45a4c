"""Time and chance as the runtime reads them: through the running event loop.

Every clock and every random draw of cloudy's runtime goes through here, never to
`time` or `os.urandom` directly, so that one event loop can stand in for all of them.
An ordinary loop answers with the machine's own: its monotonic clock (`loop.time`),
``time.time``, ``time.process_time`` and ``os.urandom``. A loop that offers its own
— the simulator's does (`cloudy.testing.sim`) — answers with a virtual clock and a
seeded generator, so that a whole cluster's run is a function of its seed.

A loop offers them by having these attributes (all or none):

* ``cloudy_wall() -> float`` — seconds since the epoch, as `time.time`;
* ``cloudy_cpu() -> float`` — CPU seconds of this node, as `time.process_time`;
* ``cloudy_random: random.Random`` — the source of every random draw.

Outside a running loop (a command-line tool, a test's set-up) the machine's own are
used.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

__all__ = ["chance", "cpu", "now", "random_bytes", "simulated", "wall"]

_system = random.SystemRandom()


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def now() -> float:
    """The running loop's clock (monotonic seconds); `time.monotonic` outside one."""
    loop = _loop()
    return time.monotonic() if loop is None else loop.time()


def wall() -> float:
    """Seconds since the epoch, as the running loop tells them."""
    own = getattr(_loop(), "cloudy_wall", None)
    return time.time() if own is None else float(own())


def cpu() -> float:
    """CPU seconds used by this node, as the running loop tells them."""
    own = getattr(_loop(), "cloudy_cpu", None)
    return time.process_time() if own is None else float(own())


def chance() -> random.Random:
    """The source of random draws: the running loop's own, else the system's."""
    own: random.Random | None = getattr(_loop(), "cloudy_random", None)
    return _system if own is None else own


def random_bytes(n: int) -> bytes:
    """*n* unpredictable bytes (`os.urandom`), or the running loop's seeded ones."""
    own: random.Random | None = getattr(_loop(), "cloudy_random", None)
    return os.urandom(n) if own is None else own.randbytes(n)


def simulated() -> bool:
    """Whether the running loop keeps its own clock and chance (a simulated node)."""
    return getattr(_loop(), "cloudy_random", None) is not None
