"""Ctrl-C on ``cloudy master``: the master leaves at once, as if it had been killed.

As far as a slave can tell, a master interrupted with Ctrl-C and one killed with
``kill -9`` are the same: the master says nothing more to its slaves (no
`TerminateSlave`, no end of their ring processes); its connections close as its
process ends. Each slave then sees that its master has gone: during SEND or GRACE it
finishes the run without it and prints its result, marked ``(finished without a
master)``; before SEND it drops the run; either way it then waits for a new master.
Only a master that ends by itself — the run is over, or it failed — ends its slaves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["INTERRUPTED", "leave_on_ctrl_c"]

INTERRUPTED = (
    "cloudy: interrupted; this master left its slaves as a killed one would: they finish "
    "the run without it (once SEND has begun), then wait for a new master"
)


@contextlib.contextmanager
def leave_on_ctrl_c(before_leaving: Callable[[], None]) -> Iterator[None]:
    """While inside, Ctrl-C (SIGINT) calls *before_leaving* (to put the terminal right),
    writes `INTERRUPTED` on stderr and ends this process at once, with status 130.

    Only in the main thread (elsewhere Ctrl-C is left as it is).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(Exception):
            before_leaving()
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(OSError):
            os.write(2, (INTERRUPTED + "\n").encode())
        os._exit(130)

    previous = signal.signal(signal.SIGINT, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
