"""Running a process to its end: its exit reason, a kill, and the result it settles.

A process's coroutine runs inside `run_process`, which turns however it ended —
returned, raised, killed, told to exit, or cancelled with its node — into one
`DiedReason`, hands it to the node (``ended``: monitors, links and names are told
and freed there), and settles the future that `LocalNode.run_process` awaits.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from ..errors import ProcessExitException, ProcessLinkException
from ..messages import AnyDiedReason, DiedException, DiedNodeDown, DiedNormal
from .mailbox import Killed, Process

__all__ = ["run_process"]

log = logging.getLogger("cloudy.process")

Ended = Callable[[Process, AnyDiedReason], None]


async def run_process(
    proc: Process, fn: Callable[..., Any], args: tuple[Any, ...], ended: Ended
) -> None:
    """Run ``fn(*args)`` as *proc*; then call ``ended(proc, reason)`` and settle it."""
    reason: AnyDiedReason = DiedNormal()
    result: Any = None
    error: BaseException | None = None
    proc.started = True
    try:
        if proc.pending:
            raise proc.pending.pop(0)
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
    except asyncio.CancelledError as e:
        exc = proc.take_signal()
        if exc is None:  # the task itself was cancelled: the node is going away
            ended(proc, DiedNodeDown())
            _settle(proc, None, e)
            raise
        error = exc
        reason = _reason_for(exc)
    except Killed as e:
        error = e
        reason = _reason_for(e)
    except Exception as e:
        error = e
        reason = _reason_for(e)
        if proc.done is None and not isinstance(e, ProcessExitException | ProcessLinkException):
            log.error("process %s crashed", proc.pid, exc_info=e)
    ended(proc, reason)
    _settle(proc, result, error)
    # The traceback of *error* holds this frame, and this frame *error*: a cycle that
    # only the cyclic GC would free, with the process's whole record on it — 25 objects
    # a death, and full collections that made closing a node of 100k idle processes
    # five times slower than cancelling as many bare tasks.
    del error, result


def _reason_for(exc: BaseException) -> AnyDiedReason:
    if isinstance(exc, Killed):
        return DiedException(exc.reason)
    if isinstance(exc, ProcessExitException) and isinstance(exc.reason, str):
        return DiedException(f"{type(exc).__name__}: {exc}", exc.reason)
    return DiedException(f"{type(exc).__name__}: {exc}")


def _settle(proc: Process, result: Any, error: BaseException | None) -> None:
    done = proc.done
    if done is None or done.done():
        return
    if error is None:
        done.set_result(result)
    elif isinstance(error, Killed):
        done.set_exception(ProcessExitException(proc.pid, error.reason))
    else:
        done.set_exception(error)
