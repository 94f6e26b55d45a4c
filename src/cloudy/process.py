"""The process API: what code running inside a cloudy process calls.

The current process is found through a context variable, so these are plain
module-level functions, as in Cloud Haskell's ``Process`` monad. Functions that
only send or change local state are plain functions; functions that wait are
coroutines. Every one raises `NotInProcessError` when called outside a process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from .closure import Closure
from .identity import MonitorRef, NodeId, ProcessId
from .links import link, monitor
from .messages import LogMessage, ProcessInfo, WhereIsReply
from .node import (
    CURRENT_PROCESS,
    LocalNode,
    Match,
    Policy,
    Process,
    current_node,
    current_process,
    expect,
    log_time,
    receive_all,
)
from .receiving import match_if, receive_timeout

__all__ = [
    "Match",
    "call",
    "drain",
    "expect",
    "get_process_info",
    "get_self_node",
    "get_self_pid",
    "nsend",
    "nsend_remote",
    "receive_all",
    "reconnect",
    "register",
    "reregister",
    "say",
    "send",
    "send_many",
    "set_mailbox_limit",
    "spawn",
    "spawn_link",
    "spawn_local",
    "spawn_monitor",
    "unregister",
    "usend",
    "whereis",
    "whereis_remote",
    "whereis_remote_async",
]

T = TypeVar("T")

# A bound method in a global: CPython 3.11 calls a method of an imported name with
# LOAD_ATTR (it takes it for a module), which costs the hottest send ~10%.
_find_process = CURRENT_PROCESS.get
R = TypeVar("R")


# ==================================================================================
# Identity
# ==================================================================================


def get_self_pid() -> ProcessId:
    """The calling process's pid."""
    return current_process().pid


def get_self_node() -> NodeId:
    """The id of the node the calling process runs on."""
    return current_node().node_id


# ==================================================================================
# Messaging
# ==================================================================================


def send(pid: ProcessId, msg: Any) -> None:
    """Send *msg* to *pid*, local or remote. Never waits, never drops because of load.

    Messages from one process to another arrive in the order sent. A message to
    a process that no longer exists is dropped silently; across nodes delivery is
    at most once (a message in flight when a connection breaks is lost, and
    monitors are told). Raises `EncodeError` if *msg* cannot cross the wire and
    *pid* is remote.

    Backpressure: when more than the node's ``send_high_water`` bytes wait to go to
    *pid*'s node, the sending process is suspended at its next cloudy await (a
    receive, `drain`) until they fall below half of it, as Erlang suspends a sender
    to a busy distribution port.
    """
    proc = _find_process(None)
    if proc is None:
        current_node()  # raises NotInProcessError
        return
    node: LocalNode = proc.node
    if pid.node is node.node_id and pid.creation == node.creation:
        tracer = node.tracer
        if not tracer.messages:  # nobody traces or counts messages: the hot path
            target = node.processes.get(pid.lid)
            if target is not None:
                mb = target.mailbox
                if mb is not None and target.waiter is None:
                    mb.append(msg)  # nobody to wake: just queue it
                    if len(mb) >= node.watch_mailboxes_at and target.attention is None:
                        node.flow.delivered(target, None)  # a long mailbox: logged
                else:
                    target.deliver(msg)
            return
        if not tracer.tracing:  # counted, not traced: the hot path and two counts
            _send_here_counted(node, proc, pid, msg)
            return
    busy = node.send(pid, msg, proc)
    proc.messages_out += 1
    if busy is not None:
        proc.block(busy)


def _send_here_counted(node: LocalNode, proc: Process, pid: ProcessId, msg: Any) -> None:
    """`send`'s hot path while the node counts messages (someone asked about them)."""
    proc.messages_out += 1
    target = node.processes.get(pid.lid)
    if target is not None:
        mb = target.mailbox
        if mb is not None and target.waiter is None:
            mb.append(msg)
            target.messages_in += 1
            if len(mb) >= node.watch_mailboxes_at and target.attention is None:
                node.flow.delivered(target, None)
        else:
            target.deliver(msg)  # (counts it)


def usend(pid: ProcessId, msg: Any) -> None:
    """`send`, without the prefix rule: after a lost connection it reconnects by itself.

    Cloud Haskell's ``usend``: the messages sent to *pid*'s node while its connection
    was down are lost, and later ones may still arrive — a hole followed by later
    messages. Use it where each message stands alone (a status, a sample); use
    `send` where order matters, and `reconnect` after a loss.
    """
    proc = current_process()
    busy = current_node().send(pid, msg)
    proc.messages_out += 1
    if busy is not None:
        proc.block(busy)


def reconnect(to: ProcessId | NodeId) -> None:
    """Send again to process *to* (or to every process of node *to*) after a loss.

    Messages from this process to another are delivered in order, or not at all from
    some point on: once the connection to the other's node broke, what this process
    sends to it is dropped (with one log line) until it calls `reconnect`. Then
    delivery resumes on a new connection; what was lost in between stays lost
    (monitors were told, with `DiedDisconnect`). Processes it never sent to before
    are not held back.
    """
    current_node().reconnect(current_process(), to)


def send_many(pids: Iterable[ProcessId], msg: Any) -> None:
    """`send` *msg* to each of *pids*, in that order; encoded once for all remote ones.

    The broadcast primitive: each recipient gets the message as if sent to it alone.
    """
    proc = _find_process(None) or current_process()
    busy = current_node().send_many(pids, msg, proc)
    if busy is not None:
        proc.block(busy)


async def drain() -> None:
    """Wait until every peer this process has sent to can take more; yield once anyway.

    The await point for a process that only sends (one that also receives waits at
    its receives): ``for x in xs: send(pid, x)`` then ``await drain()`` now and then
    keeps the bytes buffered towards a slow peer bounded.
    """
    await current_process().checkpoint()  # waits for a busy peer first


def nsend(name: str, msg: Any) -> None:
    """Send *msg* to the process registered as *name* on this node (dropped if none)."""
    proc = current_process()
    busy = current_node().nsend(name, msg)
    proc.messages_out += 1
    if busy is not None:
        proc.block(busy)


def nsend_remote(node: NodeId, name: str, msg: Any) -> None:
    """Send *msg* to the process registered as *name* on *node*."""
    proc = current_process()
    busy = current_node().nsend_remote(node, name, msg, proc)
    proc.messages_out += 1
    if busy is not None:
        proc.block(busy)


# ==================================================================================
# Spawning
# ==================================================================================


def spawn_local(fn: Callable[..., Awaitable[Any]], *args: Any) -> ProcessId:
    """Start ``fn(*args)`` as a new process on this node; return its pid at once."""
    return current_node().fork_process(fn, *args)


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
    `SpawnError` if *node* has no such function in its remote table (this node or
    another alike).
    """
    return await current_process().guard(current_node().spawn(node, clo))


async def call(node: NodeId, clo: Closure) -> Any:
    """Run the registered function named by *clo* on *node* and return its result.

    Raises as `spawn` does, and `RemoteCallError` carrying the remote's message
    when the function raises there.
    """
    return await current_process().guard(current_node().call(node, clo))


# ==================================================================================
# Registry
# ==================================================================================


def register(name: str, pid: ProcessId) -> None:
    """Register *name* for *pid* on this node.

    Raises `ProcessRegistrationException` if *name* is taken. The name is freed
    when the process ends.
    """
    current_node().registry.register(name, pid)


def reregister(name: str, pid: ProcessId) -> None:
    """Point the registered *name* at *pid* (raises if *name* is not registered)."""
    current_node().registry.reregister(name, pid)


def unregister(name: str) -> None:
    """Free *name* (raises `ProcessRegistrationException` if it is not registered)."""
    current_node().registry.unregister(name)


def whereis(name: str) -> ProcessId | None:
    """The pid registered as *name* on this node, or None."""
    return current_node().registry.whereis(name)


def whereis_remote_async(node: NodeId, name: str) -> None:
    """Ask *node* who is registered as *name*; a `WhereIsReply` arrives later."""
    current_node().whereis_remote_async(current_process().pid, node, name)


async def whereis_remote(node: NodeId, name: str, seconds: float = 5.0) -> ProcessId | None:
    """Who is registered as *name* on *node* (None: nobody), awaited. Raises
    `TimeoutError` if *node* does not answer within *seconds* (unreachable, say)."""
    whereis_remote_async(node, name)
    reply = await receive_timeout(
        seconds, match_if(WhereIsReply, lambda r: r.name == name, lambda r: r)
    )
    if reply is None:
        raise TimeoutError(f"{node} did not say who {name!r} is within {seconds:g} s")
    return reply.pid


# ==================================================================================
# Introspection and limits
# ==================================================================================


def get_process_info(pid: ProcessId) -> ProcessInfo | None:
    """What is known of *pid*: its names, mailbox length, monitors and links.

    None if it is not alive. Only processes of the calling process's node can be
    asked (a remote pid gives None).
    """
    return current_node().process_info(pid)


def set_mailbox_limit(limit: int | None, on_full: Policy = "drop_newest") -> None:
    """Limit the calling process's mailbox to *limit* messages (None: unlimited).

    A message that arrives over it is dropped with a log line (``"drop_newest"``)
    or ends the process (``"kill"``). Mailboxes are unlimited by default, as in
    Erlang: a long one is logged, and slows the remote senders feeding it.
    """
    current_node().flow.set_limit(current_process(), limit, on_full)


# ==================================================================================
# Logging
# ==================================================================================


def say(text: str) -> None:
    """Send *text* to the ``"logger"`` process, which prints ``<time> <pid>: <text>``."""
    current_node().nsend("logger", LogMessage(log_time(), current_process().pid, text))
