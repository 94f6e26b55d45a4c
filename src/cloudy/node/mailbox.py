"""One process's record: its mailbox, selective receive, waiting, and signals.

Theory of operation
-------------------
A process is an asyncio task running a user coroutine, plus a `Process` record
holding its mailbox (a deque, made on first delivery so idle processes stay
small) and at most one *waiter* future, set only while the process is blocked in
a receive. Delivering a message is a deque append, and a wake-up only if the
owner is actually waiting: a process that finds a matching message already in its
mailbox pays no task switch (every `REDUCTIONS` receives it yields once anyway, as
Erlang's reduction count does, so it cannot starve the loop).

Asynchronous signals (`exit`, `kill`, a linked process dying) are queued on the
target and its task is cancelled; the cancellation surfaces at the target's next
await. Inside cloudy's own waits it is turned back into the signal's exception
(`ProcessExitException`, `ProcessLinkException`), which user code may catch; at
any other await it ends the process with that reason.

Ownership rule: this file owns what belongs to one process alone — its mailbox,
its waiter, its queue of signals, its reduction count, its channels' queues and its
two counters (messages put in its mailbox, messages it sent: a plain increment each,
wherever that happens).
Tables that relate processes to each other (names, monitors, links) live in
``registry.py`` and ``monitors.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..errors import NotInProcessError, ProcessExitException
from ..identity import ProcessId
from ..transport.tcp import Connection
from .waiting import waits_in

__all__ = [
    "CURRENT_PROCESS",
    "REDUCTIONS",
    "Attention",
    "Killed",
    "Process",
    "ProcessState",
    "ReceivePortState",
    "current_process",
    "exit_signal",
]

# Receives served from the mailbox without waiting before a process yields once.
REDUCTIONS = 2000
# While a process has `Attention` left to see to, it looks again every this many.
ATTEND_EVERY = 64

R = TypeVar("R")
T = TypeVar("T")


class ProcessState(enum.Enum):
    RUNNING = "running"
    DEAD = "dead"


class Killed(BaseException):
    """Ends a process unconditionally (`kill`): not an `Exception`, so not caught by accident."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def exit_signal(sender: ProcessId, reason: Any, kill: bool) -> BaseException:
    """What `exit` (or, with *kill*, `kill`) from *sender* raises in its target."""
    if kill:
        return Killed(f"killed by {sender}: {reason}")
    return ProcessExitException(sender, reason)


class ReceivePortState:
    """The queue of one typed channel, and the processes waiting on it, first come first."""

    __slots__ = ("queue", "waiters")

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        self.waiters: deque[asyncio.Future[None]] = deque()

    def deliver(self, msg: Any) -> None:
        self.queue.append(msg)
        self.wake_one()

    def wake_one(self) -> None:
        """Wake the first process waiting (one still waiting) for a message."""
        waiters = self.waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():  # else cancelled by a signal that has not surfaced yet
                w.set_result(None)
                break


class Attention:
    """What a process must see to at its next receive: a busy peer it sent to, or its
    long or limited mailbox (kept by ``flow.py``, which says more).

    Most processes have none, and their receives pay one check for it.
    """

    __slots__ = ("blocked", "dropped", "limited", "looks", "paused", "taken", "warned")

    def __init__(self) -> None:
        # a busy peer's future: the process waits on it before receiving (backpressure)
        self.blocked: asyncio.Future[None] | None = None
        self.warned = False
        self.paused: list[Connection] = []  # connections not read until it is shorter
        self.dropped = 0  # messages dropped over its limit since last logged
        self.limited = False  # a mailbox limit is set
        self.taken: Callable[[Process], None] | None = None  # the flow's check
        self.looks = 0  # how often it was seen to since the process last yielded

    def idle(self) -> bool:
        """Nothing left to see to."""
        return not (self.blocked or self.warned or self.paused or self.dropped or self.limited)


class Process:
    """The node's record of one process."""

    __slots__ = (
        "__weakref__",
        "attention",
        "contacts",
        "done",
        "last_to",
        "mailbox",
        "messages_in",
        "messages_out",
        "node",
        "pending",
        "pid",
        "ports",
        "reductions",
        "started",
        "state",
        "task",
        "waiter",
    )

    def __init__(
        self, pid: ProcessId, done: asyncio.Future[Any] | None = None, node: Any = None
    ) -> None:
        self.pid = pid
        # the `LocalNode` it runs on: `send` finds both with one context lookup
        self.node = node
        self.state = ProcessState.RUNNING
        self.task: asyncio.Task[None] | None = None
        self.mailbox: deque[Any] | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.pending: list[BaseException] | None = None
        self.reductions = 0
        self.started = False
        self.ports: dict[int, ReceivePortState] | None = None
        # the result of `run_process`: set when the process ends
        self.done = done
        self.attention: Attention | None = None  # see `Attention`
        # each remote process it sent to: its node's generation then (see ``routing``)
        self.contacts: dict[ProcessId, int] | None = None
        self.last_to: ProcessId | None = None  # the last of them (a fast path)
        # counts: messages put in its mailbox, and messages it sent (the process API's)
        self.messages_in = 0
        self.messages_out = 0

    def __repr__(self) -> str:
        queued = len(self.mailbox) if self.mailbox else 0
        return f"<Process {self.pid} {self.state.value} mailbox={queued}>"

    def deliver(self, msg: Any) -> None:
        mb = self.mailbox
        if mb is None:
            mb = self.mailbox = deque()
        mb.append(msg)
        self.messages_in += 1
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():  # cancelled by a signal that has not surfaced yet
                w.set_result(None)

    def signal(self, exc: BaseException) -> None:
        """Queue an asynchronous exception and interrupt the process's current await."""
        if self.state is ProcessState.DEAD or self.task is None:
            return
        if self.pending is None:
            self.pending = []
        # One cancel stands for the whole queue (`take_signal` re-arms it): a cancel
        # per signal would leave the task's cancelling() count above zero for good.
        # A kill cancels regardless, in case the process swallowed an earlier cancel.
        first = not self.pending
        if isinstance(exc, Killed):
            self.pending.insert(0, exc)
        else:
            self.pending.append(exc)
        if self.started and (first or isinstance(exc, Killed)):
            self.task.cancel()
        # else: cancelling a task that has not run would skip the runner entirely
        # (and so its cleanup); it takes the signal when it starts.

    def take_signal(self) -> BaseException | None:
        """After a CancelledError: the queued signal it stood for, if any."""
        pending = self.pending
        if not pending:
            return None
        exc = pending.pop(0)
        task = self.task
        assert task is not None
        task.uncancel()
        if pending and not isinstance(exc, Killed):
            task.cancel()  # the next one surfaces at the next await
        return exc

    def raise_signal(self) -> None:
        """In an ``except CancelledError`` block: raise the signal the cancellation
        stood for, if any. If none, the caller re-raises the cancellation as it came:
        it is aimed at the caller (the task itself was cancelled)."""
        exc = self.take_signal()
        if exc is not None:
            try:
                raise exc from None
            finally:  # (its traceback holds this frame: no cycle through ``exc``)
                del exc

    async def guard(self, aw: Awaitable[T]) -> T:
        """Await *aw*, turning an interruption by a signal into the signal's exception."""
        try:
            return await aw
        except asyncio.CancelledError:
            self.raise_signal()
            raise

    def block(self, busy: asyncio.Future[None]) -> None:
        """This process sent to a busy peer: it waits for *busy* at its next receive."""
        self.need_attention().blocked = busy

    def need_attention(self) -> Attention:
        """This process's `Attention`, seen to at its next receive (made if need be)."""
        attention = self.attention
        if attention is None:
            attention = self.attention = Attention()
        # the receives' fast path checks nothing else: send the next one to `reduce`
        self.reductions = REDUCTIONS
        return attention

    async def reduce(self) -> None:
        """Every `REDUCTIONS` receives (sooner when there is `Attention` to see to)."""
        attention = self.attention
        if attention is not None:
            await self.attend()
            if self.attention is not None:  # still there: look again soon
                self.reductions = REDUCTIONS - ATTEND_EVERY
                attention.looks += 1
                if attention.looks < REDUCTIONS // ATTEND_EVERY:
                    return
                attention.looks = 0  # and yield as often as without it
        self.reductions = 0
        await self.checkpoint()

    @waits_in("drain")
    async def attend(self) -> None:
        """See to what needs it before receiving: wait for a busy peer, check the mailbox."""
        attention = self.attention
        assert attention is not None
        while (blocked := attention.blocked) is not None:
            attention.blocked = None
            if not blocked.done():
                # shielded: a signal interrupting this process must not cancel the
                # future every other sender to that peer waits on
                await self.guard(asyncio.shield(blocked))
        if attention.taken is not None:
            attention.taken(self)
        if attention.idle() and self.attention is attention:
            self.attention = None

    async def wait(self, timeout_at: float | None = None) -> bool:
        """Block until a message arrives (True) or *timeout_at* passes (False)."""
        if self.attention is not None:
            await self.attend()
        fut = self.arm()
        handle = None
        if timeout_at is not None:
            handle = fut.get_loop().call_at(timeout_at, _wake, fut)
        try:
            await fut
        except asyncio.CancelledError:
            self.raise_signal()
            raise
        finally:
            self.waiter = None
            if handle is not None:
                handle.cancel()
        return timeout_at is None or fut.get_loop().time() < timeout_at

    def arm(self) -> asyncio.Future[None]:
        """A new future that the next message delivered resolves: the process's waiter."""
        # (the task's loop: Python 3.11's get_running_loop makes a getpid syscall)
        task = self.task
        loop = task.get_loop() if task is not None else asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.waiter = fut
        return fut

    async def checkpoint(self) -> None:
        """Yield to the loop once; deliver any queued signal as its exception."""
        if self.attention is not None:
            await self.attend()
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.raise_signal()
            raise

    async def count_reduction(self) -> None:
        """Yield once every `REDUCTIONS` receives served without waiting."""
        self.reductions += 1
        if self.reductions >= REDUCTIONS:
            await self.reduce()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_current: contextvars.ContextVar[Process] = contextvars.ContextVar("cloudy_process")
#: The calling process's record, or None outside a process: ``CURRENT_PROCESS.get(None)``.
CURRENT_PROCESS = _current


def current_process() -> Process:
    """The calling process's record; raises `NotInProcessError` outside a process."""
    proc = _current.get(None)
    if proc is None:
        raise NotInProcessError("this must be called from inside a cloudy process")
    return proc


def enter(proc: Process) -> contextvars.Context:
    """A copy of the current context in which *proc* is the current process."""
    ctx = contextvars.copy_context()
    ctx.run(_current.set, proc)
    return ctx
