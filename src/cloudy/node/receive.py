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
from itertools import groupby
from typing import Any, Generic, Protocol, TypeVar

from .mailbox import CURRENT_PROCESS, REDUCTIONS, Process, ReceivePortState, current_process
from .waiting import waits_in

__all__ = ["Match", "expect", "receive_all", "take"]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)  # a clause of a narrower result is one of a wider
T = TypeVar("T")

# A bound method in a global: CPython 3.11 calls a method of an imported name with
# LOAD_ATTR (it takes it for a module), which costs the hottest receive ~20%.
_find_current = CURRENT_PROCESS.get


class Source(Protocol):
    """A channel a clause can take from (`cloudy.match_chan`'s receive port)."""

    def _pop(self) -> tuple[bool, Any]: ...

    def _states(self) -> list[ReceivePortState]: ...


class Match(Generic[R_co]):
    """One clause of a selective receive; build it with `match`, `match_if` or `match_any`."""

    __slots__ = ("handler", "predicate", "source", "type")

    def __init__(
        self,
        tp: type[Any] | None,
        predicate: Callable[[Any], bool] | None,
        handler: Callable[[Any], R_co | Awaitable[R_co]],
        source: Source | None = None,
    ) -> None:
        self.type = tp
        self.predicate = predicate
        self.handler = handler
        self.source = source  # a channel this clause takes from, not the mailbox

    def __repr__(self) -> str:
        name = self.type.__qualname__ if self.type else "any"
        return f"<Match {name}{' if ...' if self.predicate else ''}>"

    def accepts(self, msg: Any) -> bool:
        if self.source is not None:
            return False  # it takes from its channel only
        if self.type is not None and not isinstance(msg, self.type):
            return False
        return self.predicate is None or bool(self.predicate(msg))


@waits_in("receive")
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
    channels = [c for c in clauses if c.source is not None]
    if channels:
        return await _take_with_channels(proc, clauses, channels, deadline)
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


@waits_in("receive_chan")
async def _take_with_channels(
    proc: Process,
    clauses: tuple[Match[Any], ...],
    channels: list[Match[Any]],
    deadline: float | None,
) -> tuple[Any, Match[Any]] | None:
    """`take` when some clauses take from channels. The clauses are tried in the order
    given, as Cloud Haskell does: a channel clause takes its channel's next message; a
    run of mailbox clauses takes the first message, in arrival order, one of them
    accepts. Waiting, it is woken by a channel or the mailbox."""
    loop = asyncio.get_running_loop()
    runs = [(on_channel, list(run)) for on_channel, run in groupby(clauses, _on_channel)]
    while True:
        for on_channel, run in runs:
            if on_channel:
                for clause in run:
                    found, msg = clause.source._pop()  # type: ignore[union-attr]
                    if found:
                        return msg, clause
                continue
            mb = proc.mailbox
            if mb:
                for i, msg in enumerate(mb):
                    for clause in run:
                        if clause.accepts(msg):
                            del mb[i]
                            return msg, clause
        if deadline is not None and deadline <= loop.time():
            return None
        # a message on any of the channels wakes us as one in the mailbox would
        poke: asyncio.Future[None] = loop.create_future()
        poke.add_done_callback(lambda _: _wake_waiter(proc))
        states = [st for clause in channels for st in clause.source._states()]  # type: ignore[union-attr]
        for st in states:
            st.waiters.append(poke)
        try:
            await proc.wait(deadline)
        finally:
            for st in states:
                if poke in st.waiters:
                    st.waiters.remove(poke)
                elif poke.done() and st.queue:
                    st.wake_one()  # the wakeup it gave us may be another's: pass it on
            if not poke.done():
                poke.cancel()


def _on_channel(clause: Match[Any]) -> bool:
    return clause.source is not None


def _wake_waiter(proc: Process) -> None:
    waiter = proc.waiter
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


@waits_in("receive")
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
        # `Process.wait` without a timeout, inlined: a coroutine less for every process
        # waiting here (12-23 % faster spawns, 0.26 KB less each: benchmarks/spawn.py)
        if proc.attention is not None:
            await proc.attend()
        try:
            await proc.arm()  # (the delivery that wakes it clears its waiter)
        except asyncio.CancelledError:
            proc.waiter = None
            proc.raise_signal()
            raise


@waits_in("receive")
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
