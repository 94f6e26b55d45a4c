"""Selective receive: taking messages out of the calling process's mailbox.

Messages no clause accepts stay in the mailbox, in order. A process that finds a
matching message already waiting pays no task switch; every `REDUCTIONS` receives
it yields once anyway, so it cannot starve the loop. Before it receives, a process
that sent to a busy peer waits for it (backpressure), and a long mailbox is
checked (see ``flow.py``): `Process.attend`, one check when there is nothing to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from .mailbox import CURRENT_PROCESS, REDUCTIONS, Process, current_process

__all__ = ["Match", "expect", "receive_all", "take"]

R = TypeVar("R")
T = TypeVar("T")

# A bound method in a global: CPython 3.11 calls a method of an imported name with
# LOAD_ATTR (it takes it for a module), which costs the hottest receive ~20%.
_find_current = CURRENT_PROCESS.get


class Match(Generic[R]):
    """One clause of a selective receive; build it with `match`, `match_if` or `match_any`."""

    __slots__ = ("handler", "predicate", "type")

    def __init__(
        self,
        tp: type[Any] | None,
        predicate: Callable[[Any], bool] | None,
        handler: Callable[[Any], R | Awaitable[R]],
    ) -> None:
        self.type = tp
        self.predicate = predicate
        self.handler = handler

    def __repr__(self) -> str:
        name = self.type.__qualname__ if self.type else "any"
        return f"<Match {name}{' if ...' if self.predicate else ''}>"

    def accepts(self, msg: Any) -> bool:
        if self.type is not None and not isinstance(msg, self.type):
            return False
        return self.predicate is None or bool(self.predicate(msg))


async def take(
    proc: Process, clauses: tuple[Match[Any], ...], seconds: float | None
) -> tuple[Any, Match[Any]] | None:
    """Remove and return ``(message, clause)`` for the first message some clause accepts.

    Returns None when *seconds* pass first. Messages no clause accepts stay in
    the mailbox, in order.
    """
    await proc.count_reduction()
    deadline = None
    if seconds is not None:
        deadline = asyncio.get_running_loop().time() + max(seconds, 0.0)
    i = 0
    while True:
        mb = proc.mailbox
        if mb:
            n = len(mb)
            while i < n:
                msg = mb[i]
                for clause in clauses:
                    if clause.accepts(msg):
                        del mb[i]
                        return msg, clause
                i += 1
        if seconds is not None and seconds <= 0:
            return None
        if not await proc.wait(deadline):
            if proc.mailbox is not None and len(proc.mailbox) > i:
                seconds = 0  # one last look at what came with the deadline
                continue
            return None


async def expect(tp: type[T]) -> T:
    """Wait for, remove and return the first message of type *tp* in the mailbox."""
    # `take` specialised for one type and no timeout: the hottest receive there is
    proc = _find_current(None) or current_process()
    proc.reductions += 1
    if proc.reductions >= REDUCTIONS:  # also the way to `Attention`, if any
        await proc.reduce()
    i = 0
    while True:
        mb = proc.mailbox
        if mb:
            if i == 0 and isinstance(mb[0], tp):
                first: T = mb.popleft()
                return first
            n = len(mb)
            while i < n:
                msg = mb[i]
                if isinstance(msg, tp):
                    del mb[i]
                    return msg
                i += 1
        await proc.wait()


async def receive_all(limit: int = REDUCTIONS) -> list[Any]:
    """Take the messages waiting, oldest first, at most *limit*; wait only if there is none.

    For a process that handles its mailbox in bulk (a broadcast ring, a router): one
    call per batch instead of one per message. When messages are already waiting it
    yields to the loop once first, so a process that always has work is fair to the
    others (and more messages can join the batch); *limit* bounds one call's work.
    Selective receive still sees what is left and what arrives after the call.
    """
    proc = _find_current(None) or current_process()
    if proc.attention is not None:
        await proc.attend()
    if proc.mailbox:
        await proc.checkpoint()
    else:
        while not proc.mailbox:
            await proc.wait()
    mb = proc.mailbox
    assert mb is not None
    if len(mb) > limit:
        taken = [mb.popleft() for _ in range(limit)]
    else:
        taken = list(mb)  # the deque stays: a batch is small next to a new deque's cost
        mb.clear()
    return taken
