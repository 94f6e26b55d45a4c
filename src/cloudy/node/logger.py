"""The ``"logger"`` process every node starts, and the timestamp `say` puts on a line."""

from __future__ import annotations

import sys
import time

from .. import clock
from ..messages import LogMessage
from .receive import receive_all

__all__ = ["log_time", "logger_loop"]


async def logger_loop() -> None:
    """Print each `LogMessage` as ``<time> <pid>: <text>`` on stderr; drop anything else."""
    while True:
        for msg in await receive_all():
            if isinstance(msg, LogMessage):
                # one write per line: nodes sharing a terminal or a pipe never
                # split each other's lines (print writes the newline apart)
                sys.stderr.write(f"{msg.time} {msg.pid}: {msg.text}\n")
                sys.stderr.flush()


def log_time() -> str:
    """The timestamp `say` puts on a line."""
    now = clock.wall()
    # (a simulated node's in UTC: its run is the same in every time zone)
    local = time.gmtime if clock.simulated() else time.localtime
    return time.strftime("%Y-%m-%d %H:%M:%S", local(now)) + f".{int(now % 1 * 1000):03d}"
