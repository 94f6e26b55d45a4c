"""Cloud Haskell's combinators over the primitives: `call_local`, `spawn_async`
(→ `DidSpawn`), `catches_exit`, the remote `spawn_link_remote`,
`spawn_monitor_remote`, `spawn_supervised` that cannot lose the child's end, and
`register_remote_async` / `unregister_remote_async` (→ `RegisterReply`), `forward`,
`uforward`, `spawn_channel`, `spawn_channel_local` and `monitor_port`.

Each is what a user could write with the process API, written once; beyond it they
ask the calling process's node for two things only: a number unique on the node (a
spawn's reference) and its remote table (to run a closure by name).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from .channels import new_chan
from .closure import Closure, closure, remotable
from .errors import CloudyError, ProcessExitException, ProcessRegistrationException
from .identity import MonitorRef, NodeId, ProcessId, SendPort
from .links import kill, link, monitor
from .message import Message
from .messages import DiedNormal, ProcessMonitorNotification
from .node import current_node
from .process import (
    call,
    expect,
    get_self_pid,
    register,
    send,
    spawn,
    spawn_local,
    unregister,
    usend,
    whereis,
)
from .receiving import match_if, receive_wait

__all__ = [
    "DidSpawn",
    "PortMonitorNotification",
    "RegisterReply",
    "SpawnRef",
    "call_local",
    "catches_exit",
    "forward",
    "monitor_port",
    "register_remote_async",
    "spawn_async",
    "spawn_channel",
    "spawn_channel_local",
    "spawn_link_remote",
    "spawn_monitor_remote",
    "spawn_supervised",
    "uforward",
    "unregister_remote_async",
]

T = TypeVar("T")


async def call_local(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(*args)`` in a new local process and return its result (or raise its
    exception). An exit signal that reaches the caller meanwhile ends the other process
    too, and the caller waits for it to end before the signal goes on (Cloud Haskell's
    ``callLocal``): the work is the caller's own, isolated in a process of its own (its
    mailbox, its links)."""
    outcome: dict[str, Any] = {}

    async def body() -> None:
        try:
            outcome["value"] = await fn(*args)
        except BaseException as e:
            outcome["error"] = e
            raise

    pid = spawn_local(body)
    ref = monitor(pid)
    ended = match_if(ProcessMonitorNotification, lambda n: n.ref == ref)
    try:
        note = await receive_wait(ended)
    except Exception:
        # an exit signal or a link ends the caller: its worker ends first, so the
        # worker's cleanup has run before the caller's own (as in Cloud Haskell)
        kill(pid, "call_local: its caller ended")
        await receive_wait(ended)
        raise
    except BaseException:  # killed, or its node is closing: no waiting
        kill(pid, "call_local: its caller ended")
        raise
    if "error" in outcome:
        raise outcome["error"]
    if not isinstance(note.reason, DiedNormal):
        raise CloudyError(f"call_local: the process ended ({note.reason!r})")
    return cast(T, outcome["value"])


class SpawnRef(Message):
    """What `spawn_async` returns; the `DidSpawn` that follows carries it."""

    id: int


class DidSpawn(Message):
    """The outcome of a `spawn_async`: *pid*, or *error* saying why there is none (an
    unreachable node, an unknown closure)."""

    ref: SpawnRef
    pid: ProcessId | None
    error: str | None = None


def spawn_async(node: NodeId, clo: Closure) -> SpawnRef:
    """Start *clo* on *node* without waiting: a `DidSpawn` with the returned ref
    arrives in the caller's mailbox (Cloud Haskell's ``spawnAsync``)."""
    ref, caller = SpawnRef(current_node().next_number()), get_self_pid()

    async def spawner() -> None:
        try:
            pid = await spawn(node, clo)
        except CloudyError as e:
            send(caller, DidSpawn(ref, None, f"{type(e).__name__}: {e}"))
        else:
            send(caller, DidSpawn(ref, pid))

    spawn_local(spawner)
    return ref


async def catches_exit(
    action: Callable[[], Awaitable[T]],
    *handlers: tuple[type | tuple[type, ...], Callable[[ProcessId, Any], Any]],
) -> T:
    """Run *action*; if an exit signal arrives meanwhile, the first handler whose type
    matches its reason is called with ``(sender, reason)`` and its result returned; if
    none matches, the signal goes on (Cloud Haskell's ``catchesExit``)."""
    try:
        return await action()
    except ProcessExitException as e:
        for kind, handler in handlers:
            if isinstance(e.reason, kind):
                result = handler(e.sender, e.reason)
                if inspect.isawaitable(result):
                    result = await result
                return cast(T, result)
        raise


# --- remote spawns that cannot lose the child's end -----------------------------------
#
# Spawning on another node and then monitoring (or linking) races with a child that
# ends at once: the monitor would report `DiedUnknownId` and lose its real reason. So
# the child is started held: it waits for `_Go`, sent once the link or monitor is in
# place (Cloud Haskell's own way), and then runs the closure.


class _Go(Message):
    """To a held child: run now (and, if *parent* is set, link to it first)."""

    parent: ProcessId | None = None


@remotable
async def _held(name: str, args: list[Any]) -> Any:
    go = await expect(_Go)
    if go.parent is not None:
        link(go.parent)
    return await _run_registered(name, args)


async def _run_registered(name: str, args: list[Any]) -> Any:
    """Run the function registered as *name* on this node with *args*; its result."""
    fn = current_node().remote_table.lookup(name)
    if fn is None:
        raise CloudyError(f"{name!r} is not in the remote table of {current_node().node_id}")
    result = fn(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _spawn_held(node: NodeId, clo: Closure) -> ProcessId:
    return await spawn(node, closure(_held, clo.name, list(clo.args)))


async def spawn_monitor_remote(node: NodeId, clo: Closure) -> tuple[ProcessId, MonitorRef]:
    """Start *clo* on *node* and monitor it, the monitor in place before it runs (Cloud
    Haskell's ``spawnMonitor``): a child that ends at once is still reported with
    its own reason."""
    pid = await _spawn_held(node, clo)
    ref = monitor(pid)
    send(pid, _Go())
    return pid, ref


async def spawn_link_remote(node: NodeId, clo: Closure) -> ProcessId:
    """Start *clo* on *node*, linked to it before it runs (Cloud Haskell's
    ``spawnLink``)."""
    pid = await _spawn_held(node, clo)
    link(pid)
    send(pid, _Go())
    return pid


async def spawn_supervised(node: NodeId, clo: Closure) -> tuple[ProcessId, MonitorRef]:
    """Start *clo* on *node*: the child links to the caller and the caller monitors
    the child, both before it runs (Cloud Haskell's ``spawnSupervised``)."""
    pid = await _spawn_held(node, clo)
    ref = monitor(pid)
    send(pid, _Go(get_self_pid()))
    return pid, ref


# --- asking another node's registry -----------------------------------------------------


class RegisterReply(Message):
    """The answer to `register_remote_async` / `unregister_remote_async`: whether
    *node* did it (a name already taken, or not registered, is refused), and *pid*,
    who holds the name there now (None: nobody) — on a refusal, who had it."""

    name: str
    ok: bool
    node: NodeId
    pid: ProcessId | None = None


@remotable
def register_here(name: str, pid: ProcessId | None) -> tuple[bool, ProcessId | None]:
    """Register (*pid*) or unregister (None) *name* on this node: whether it was done
    (False if refused), and who holds *name* now."""
    try:
        if pid is None:
            unregister(name)
        else:
            register(name, pid)
    except ProcessRegistrationException:
        return False, whereis(name)
    return True, whereis(name)


def _registry_request(node: NodeId, name: str, pid: ProcessId | None) -> None:
    caller = get_self_pid()

    async def ask() -> None:
        try:
            ok, holder = await call(node, closure(register_here, name, pid))
        except CloudyError:
            ok, holder = False, None  # unreachable, say: not done
        send(caller, RegisterReply(name, bool(ok), node, holder))

    spawn_local(ask)


def register_remote_async(node: NodeId, name: str, pid: ProcessId) -> None:
    """Ask *node* to register *name* for *pid*; a `RegisterReply` arrives later."""
    _registry_request(node, name, pid)


def unregister_remote_async(node: NodeId, name: str) -> None:
    """Ask *node* to free *name*; a `RegisterReply` arrives later."""
    _registry_request(node, name, None)


# --- forwarding, and processes that start with a channel ----------------------------


def forward(msg: Any, pid: ProcessId) -> None:
    """Pass on a message as received (Cloud Haskell's ``forward``). cloudy holds
    messages decoded, so this is `send`; its ordering and delivery are send's."""
    send(pid, msg)


def uforward(msg: Any, pid: ProcessId) -> None:
    """`forward` without the prefix rule: `usend`'s delivery."""
    usend(pid, msg)


class _ChannelOf(Message):
    """From a child started by `spawn_channel`: the send port of its channel."""

    pid: ProcessId
    port: SendPort


@remotable
async def channel_child(name: str, args: list[Any], parent: ProcessId) -> Any:
    """Make a channel, send its send port to *parent*, run the registered function
    *name* with *args* and the receive port (what `spawn_channel` starts)."""
    sp, rp = new_chan()
    send(parent, _ChannelOf(get_self_pid(), sp))
    return await _run_registered(name, [*args, rp])


async def spawn_channel(node: NodeId, clo: Closure) -> tuple[SendPort, ProcessId]:
    """Start *clo* on *node* with a new channel's receive port as its last argument;
    the channel's send port and the pid (Cloud Haskell's ``spawnChannel``)."""
    me = get_self_pid()
    pid = await spawn(node, closure(channel_child, clo.name, list(clo.args), me))
    return await _channel_of(pid), pid


async def spawn_channel_local(
    fn: Callable[..., Awaitable[Any]], *args: Any
) -> tuple[SendPort, ProcessId]:
    """Start ``fn(*args, receive_port)`` here, owning a new channel: its send port and
    the pid (Cloud Haskell's ``spawnChannelLocal``)."""
    parent = get_self_pid()

    async def child() -> Any:
        sp, rp = new_chan()
        send(parent, _ChannelOf(get_self_pid(), sp))
        return await fn(*args, rp)

    pid = spawn_local(child)
    return await _channel_of(pid), pid


async def _channel_of(pid: ProcessId) -> SendPort:
    """The send port of the channel that child *pid* made and sent us (`_ChannelOf`)."""
    got: _ChannelOf = await receive_wait(match_if(_ChannelOf, lambda c: c.pid == pid))
    return got.port


class PortMonitorNotification(Message):
    """The channel of *port* is gone: the process owning it ended, with *reason*
    (`monitor_port`)."""

    ref: MonitorRef
    port: SendPort
    reason: Any


class _Watching(Message):
    """From a port's watcher: the ref of its monitor (the caller's port monitor ref)."""

    watcher: ProcessId
    ref: MonitorRef


async def monitor_port(port: SendPort) -> MonitorRef:
    """Be told with a `PortMonitorNotification` when *port*'s channel is gone — its
    owner ended, or its node was lost (Cloud Haskell's ``monitorPort``)."""
    caller = get_self_pid()

    async def watch() -> None:
        ref = monitor(port.pid)
        send(caller, _Watching(get_self_pid(), ref))
        note = await receive_wait(match_if(ProcessMonitorNotification, lambda n: n.ref == ref))
        send(caller, PortMonitorNotification(ref, port, note.reason))

    watcher = spawn_local(watch)
    got: _Watching = await receive_wait(match_if(_Watching, lambda w: w.watcher == watcher))
    return got.ref
