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


SHOW_CURSOR = b"\x1b[?25h"


def _quietly(action: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        action()


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
        # The display is put right by another thread, given half a second: this
        # handler may have interrupted the main thread inside the console's own lock,
        # and waiting for it here would hang (the process must leave regardless).
        tidy = threading.Thread(target=_quietly, args=(before_leaving,), daemon=True)
        tidy.start()
        tidy.join(0.5)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        with contextlib.suppress(OSError):
            if os.isatty(2):
                os.write(2, SHOW_CURSOR)  # however far the tidying got
            os.write(2, (INTERRUPTED + "\n").encode())
        os._exit(130)

    previous = signal.signal(signal.SIGINT, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
