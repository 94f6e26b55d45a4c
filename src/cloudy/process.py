"""The process API: what code running inside a cloudy process calls.

The current process is found through a context variable, so these are plain
module-level functions, as in Cloud Haskell's ``Process`` monad. Functions that
only send or change local state are plain functions; functions that wait are
coroutines. Every one raises `NotInProcessError` when called outside a process.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, cast, overload

from .closure import Closure
from .errors import ProcessExitException
from .identity import MonitorRef, NodeId, ProcessId, SendPort
from .messages import LogMessage
from .node import REDUCTIONS, _current, _Process, _ReceivePortState, current_process, log_time

__all__ = [
    "Match",
    "ReceivePort",
    "call",
    "catch_exit",
    "exit",
    "expect",
    "expect_timeout",
    "get_self_node",
    "get_self_pid",
    "kill",
    "link",
    "match",
    "match_any",
    "match_if",
    "monitor",
    "monitor_node",
    "new_chan",
    "nsend",
    "nsend_remote",
    "receive_chan",
    "receive_timeout",
    "receive_wait",
    "register",
    "reregister",
    "say",
    "send",
    "send_chan",
    "spawn",
    "spawn_link",
    "spawn_local",
    "spawn_monitor",
    "unlink",
    "unmonitor",
    "unmonitor_node",
    "unregister",
    "whereis",
    "whereis_remote_async",
]

T = TypeVar("T")
R = TypeVar("R")


# ==================================================================================
# Identity
# ==================================================================================


def get_self_pid() -> ProcessId:
    """The calling process's pid."""
    return current_process().pid


def get_self_node() -> NodeId:
    """The id of the node the calling process runs on."""
    return current_process().node.node_id


# ==================================================================================
# Messaging
# ==================================================================================


def send(pid: ProcessId, msg: Any) -> None:
    """Send *msg* to *pid*, local or remote. Never waits.

    Messages from one process to another arrive in the order sent. A message to
    a process that no longer exists is dropped silently; across nodes delivery is
    at most once (a message in flight when a connection breaks is lost, and
    monitors are told). Raises `EncodeError` if *msg* cannot cross the wire and
    *pid* is remote.
    """
    proc = _current.get(None)
    if proc is None:
        current_process()  # raises NotInProcessError
        return
    node = proc.node
    if pid.node is node.node_id:  # a pid made here: the hot path, one dict lookup
        target = node._procs.get(pid.lid)
        if target is not None:
            mb = target.mailbox
            if mb is not None and target.waiter is None:
                mb.append(msg)  # nobody to wake: just queue it
            else:
                target.deliver(msg)
        return
    node.send(pid, msg)


def nsend(name: str, msg: Any) -> None:
    """Send *msg* to the process registered as *name* on this node (dropped if none)."""
    current_process().node.nsend(name, msg)


def nsend_remote(node: NodeId, name: str, msg: Any) -> None:
    """Send *msg* to the process registered as *name* on *node*."""
    current_process().node.nsend_remote(node, name, msg)


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


# The overloads let mypy see through an async handler: its clause yields what the
# coroutine returns (a bare ``R | Awaitable[R]`` infers ``Never`` for it).
@overload
def match(tp: type[T], handler: Callable[[T], Awaitable[R]]) -> Match[R]: ...
@overload
def match(tp: type[T], handler: Callable[[T], R]) -> Match[R]: ...
def match(tp: type[T], handler: Callable[[T], Any]) -> Match[Any]:
    """A clause taking the first message of type *tp* and passing it to *handler*."""
    return Match(tp, None, handler)


@overload
def match_if(
    tp: type[T], predicate: Callable[[T], bool], handler: Callable[[T], Awaitable[R]]
) -> Match[R]: ...
@overload
def match_if(
    tp: type[T], predicate: Callable[[T], bool], handler: Callable[[T], R]
) -> Match[R]: ...
def match_if(
    tp: type[T], predicate: Callable[[T], bool], handler: Callable[[T], Any]
) -> Match[Any]:
    """A clause taking the first message of type *tp* for which *predicate* holds."""
    return Match(tp, predicate, handler)


@overload
def match_any(handler: Callable[[Any], Awaitable[R]]) -> Match[R]: ...
@overload
def match_any(handler: Callable[[Any], R]) -> Match[R]: ...
def match_any(handler: Callable[[Any], Any]) -> Match[Any]:
    """A clause taking any message."""
    return Match(None, None, handler)


async def _take(proc: _Process, clauses: tuple[Match[Any], ...], seconds: float | None) -> Any:
    """Remove and return ``(message, clause)`` for the first message some clause accepts.

    Returns None when *seconds* pass first. Messages no clause accepts stay in
    the mailbox, in order.
    """
    proc.reductions += 1
    if proc.reductions >= REDUCTIONS:
        proc.reductions = 0
        await proc.checkpoint()
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


async def _run_handler(clause: Match[R], msg: Any) -> R:
    result = clause.handler(msg)
    if inspect.isawaitable(result):
        return await result
    return result


async def receive_wait(*clauses: Match[R]) -> R:
    """Wait for the first message, in arrival order, that some clause accepts.

    Clauses are tried in the order given; the message taken is passed to that
    clause's handler (sync or async) and its result returned. Every message no
    clause accepts stays in the mailbox where it was.
    """
    if not clauses:
        raise ValueError("receive_wait needs at least one clause")
    msg, clause = await _take(current_process(), clauses, None)
    return await _run_handler(clause, msg)


async def receive_timeout(seconds: float, *clauses: Match[R]) -> R | None:
    """`receive_wait` that gives up after *seconds* and returns None (0 polls)."""
    if not clauses:
        raise ValueError("receive_timeout needs at least one clause")
    taken = await _take(current_process(), clauses, seconds)
    if taken is None:
        return None
    return await _run_handler(taken[1], taken[0])


async def expect(tp: type[T]) -> T:
    """Wait for, remove and return the first message of type *tp* in the mailbox."""
    proc = _current.get(None) or current_process()
    # `_take` specialised for one type: the hottest receive there is
    proc.reductions += 1
    if proc.reductions >= REDUCTIONS:
        proc.reductions = 0
        await proc.checkpoint()
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


async def expect_timeout(seconds: float, tp: type[T]) -> T | None:
    """`expect` that gives up after *seconds* and returns None."""
    taken = await _take(current_process(), (Match(tp, None, _identity),), seconds)
    return None if taken is None else cast(T, taken[0])


def _identity(x: Any) -> Any:
    return x


# ==================================================================================
# Typed channels
# ==================================================================================


class ReceivePort(Generic[T]):
    """The receiving end of a typed channel: only its creator may receive on it."""

    __slots__ = ("_owner", "_state", "send_port")

    def __init__(self, owner: _Process, send_port: SendPort, state: _ReceivePortState) -> None:
        self._owner = owner
        self._state = state
        self.send_port = send_port

    def __repr__(self) -> str:
        return f"<ReceivePort {self.send_port!r} queued={len(self._state.queue)}>"


def new_chan() -> tuple[SendPort, ReceivePort[Any]]:
    """A new typed channel owned by the calling process: ``(send_port, receive_port)``."""
    proc = current_process()
    sp, state = proc.node.new_port(proc)
    return sp, ReceivePort(proc, sp, state)


def send_chan(port: SendPort, msg: Any) -> None:
    """Send *msg* on a channel; dropped if its owner has ended."""
    current_process().node.send_chan(port, msg)


async def receive_chan(port: ReceivePort[T]) -> T:
    """Wait for and return the next message on *port*, in the order sent."""
    proc = current_process()
    if port._owner is not proc:
        raise RuntimeError("only the process that created a channel can receive on it")
    state = port._state
    while not state.queue:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiter = fut
        try:
            await _guard(proc, fut)
        finally:
            state.waiter = None
    return cast(T, state.queue.popleft())


async def _guard(proc: _Process, aw: Awaitable[T]) -> T:
    """Await *aw*, turning an interruption by a signal into the signal's exception."""
    try:
        return await aw
    except asyncio.CancelledError:
        exc = proc.take_signal()
        if exc is None:
            raise
        raise exc from None


# ==================================================================================
# Spawning
# ==================================================================================


def spawn_local(fn: Callable[..., Awaitable[Any]], *args: Any) -> ProcessId:
    """Start ``fn(*args)`` as a new process on this node; return its pid at once."""
    return current_process().node.fork_process(fn, *args)


def spawn_link(fn: Callable[..., Awaitable[Any]], *args: Any) -> ProcessId:
    """`spawn_local`, then `link` to the new process."""
    pid = spawn_local(fn, *args)
    link(pid)
    return pid


def spawn_monitor(fn: Callable[..., Awaitable[Any]], *args: Any) -> tuple[ProcessId, MonitorRef]:
    """`spawn_local`, then `monitor` the new process: ``(pid, ref)``."""
    pid = spawn_local(fn, *args)
    return pid, monitor(pid)


async def spawn(node: NodeId, clo: Closure) -> ProcessId:
    """Start the registered function named by *clo* on *node*; return its pid.

    Raises `NodeUnreachable` if *node* cannot be reached within the connect
    timeout (`ConnectionRefusedByPeer` if it refuses our cookie or version), and
    `RemoteCallError` if *node* has no such function in its remote table.
    """
    proc = current_process()
    return await _guard(proc, proc.node.spawn(node, clo))


async def call(node: NodeId, clo: Closure) -> Any:
    """Run the registered function named by *clo* on *node* and return its result.

    Raises as `spawn` does, and `RemoteCallError` carrying the remote's message
    when the function raises there.
    """
    proc = current_process()
    return await _guard(proc, proc.node.call(node, clo))


# ==================================================================================
# Registry
# ==================================================================================


def register(name: str, pid: ProcessId) -> None:
    """Register *name* for *pid* on this node.

    Raises `ProcessRegistrationException` if *name* is taken. The name is freed
    when the process ends.
    """
    current_process().node.register(name, pid)


def reregister(name: str, pid: ProcessId) -> None:
    """Point the registered *name* at *pid* (raises if *name* is not registered)."""
    current_process().node.reregister(name, pid)


def unregister(name: str) -> None:
    """Free *name* (raises `ProcessRegistrationException` if it is not registered)."""
    current_process().node.unregister(name)


def whereis(name: str) -> ProcessId | None:
    """The pid registered as *name* on this node, or None."""
    return current_process().node.whereis(name)


def whereis_remote_async(node: NodeId, name: str) -> None:
    """Ask *node* who is registered as *name*; a `WhereIsReply` arrives later."""
    proc = current_process()
    proc.node.whereis_remote_async(proc.pid, node, name)


# ==================================================================================
# Monitoring and linking
# ==================================================================================


def monitor(pid: ProcessId) -> MonitorRef:
    """Be told with a `ProcessMonitorNotification` when *pid* ends.

    The reason is `DiedUnknownId` if *pid* does not exist (or has already ended),
    `DiedDisconnect` if the connection to its node is lost or cannot be made.
    """
    proc = current_process()
    return proc.node.monitor(proc, pid)


def unmonitor(ref: MonitorRef) -> None:
    """Cancel a monitor (or a node monitor)."""
    proc = current_process()
    proc.node.unmonitor(proc, ref)
    proc.node.unmonitor_node(ref)


def link(pid: ProcessId) -> None:
    """When *pid* ends abnormally, raise `ProcessLinkException` in the caller.

    Links are one-way, as in Cloud Haskell. Linking to a process that does not
    exist raises the exception (reason `DiedUnknownId`) at once.
    """
    proc = current_process()
    proc.node.monitor(proc, pid, link=True)


def unlink(pid: ProcessId) -> None:
    """Remove the link to *pid*."""
    proc = current_process()
    proc.node.unlink(proc, pid)


def monitor_node(node: NodeId) -> MonitorRef:
    """Be told with a `NodeMonitorNotification` when the connection to *node* is lost."""
    proc = current_process()
    return proc.node.monitor_node(proc, node)


def unmonitor_node(ref: MonitorRef) -> None:
    """Cancel a node monitor."""
    current_process().node.unmonitor_node(ref)


def exit(pid: ProcessId, reason: Any) -> None:
    """Raise `ProcessExitException(sender, reason)` in *pid*, which may catch it."""
    proc = current_process()
    proc.node.exit(proc.pid, pid, reason, kill=False)


def kill(pid: ProcessId, reason: str) -> None:
    """End *pid* unconditionally; its monitors see `DiedException` with *reason*."""
    proc = current_process()
    proc.node.exit(proc.pid, pid, reason, kill=True)


@overload
async def catch_exit(
    action: Callable[[], Awaitable[T]], handler: Callable[[ProcessId, Any], Awaitable[T]]
) -> T: ...
@overload
async def catch_exit(
    action: Callable[[], Awaitable[T]], handler: Callable[[ProcessId, Any], T]
) -> T: ...
async def catch_exit(
    action: Callable[[], Awaitable[T]], handler: Callable[[ProcessId, Any], Any]
) -> T:
    """Run *action*; if an exit signal arrives meanwhile, return ``handler(sender, reason)``."""
    try:
        return await action()
    except ProcessExitException as e:
        result = handler(e.sender, e.reason)
        if inspect.isawaitable(result):
            result = await result
        return cast(T, result)


# ==================================================================================
# Logging
# ==================================================================================


def say(text: str) -> None:
    """Send *text* to the ``"logger"`` process, which prints ``<time> <pid>: <text>``."""
    proc = current_process()
    proc.node.nsend("logger", LogMessage(log_time(), proc.pid, text))
