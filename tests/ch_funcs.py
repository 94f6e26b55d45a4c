"""The servers of Cloud Haskell's own tests (distributed-process-tests), in cloudy.

Imported by name (``ch_funcs``) in the test process and in the peer node's OS
process, so the message types carry the same tags and the ``@remotable``
functions are in both remote tables. Each is written after the Cloud Haskell
test that uses it (named in its docstring).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from cloudy import (
    DiedDisconnect,
    Match,
    Message,
    NodeId,
    ProcessId,
    ProcessMonitorNotification,
    SendPort,
    catch_exit,
    closure,
    expect,
    forward,
    get_self_pid,
    match,
    match_any,
    match_if,
    monitor,
    new_chan,
    receive_chan,
    receive_timeout,
    receive_wait,
    remotable,
    send,
    send_chan,
    spawn,
    spawn_local,
)


class Ping(Message):
    """The ping server's answer (the paper's ``Ping``)."""

    pid: ProcessId


class Pong(Message):
    """What the ping server waits for: who to answer."""

    pid: ProcessId


class Add(Message):
    reply_to: ProcessId
    x: float
    y: float


class Divide(Message):
    reply_to: ProcessId
    x: float
    y: float


class DivByZero(Message):
    pass


async def ping_loop() -> None:
    """The paper's ping server: answer every `Pong` with a `Ping` carrying our pid."""
    me = get_self_pid()
    while True:
        partner = await expect(Pong)
        send(partner.pid, Ping(me))


@remotable
async def ping_server() -> None:
    """`ping_loop` on another node (Ping, RegistryRemoteProcess, RemoteRegistry)."""
    await ping_loop()


@remotable
async def polling_ping_server() -> None:
    """Timeout0: a ping server that polls its mailbox (timeout 0) every 0.1 s."""
    while True:
        partner = await receive_timeout(0, match(Pong, lambda p: p))
        if partner is not None:
            send(partner.pid, Ping(get_self_pid()))
            return
        await asyncio.sleep(0.1)


async def math_loop() -> None:
    """The paper's math server: Add, Divide, and DivByZero for a division by zero."""
    while True:
        await receive_wait(
            match(Add, lambda m: send(m.reply_to, m.x + m.y)),
            match_if(Divide, lambda m: m.y != 0, lambda m: send(m.reply_to, m.x / m.y)),
            match(Divide, lambda m: send(m.reply_to, DivByZero())),
        )


@remotable
async def math_server() -> None:
    """Math: `math_loop` on another node."""
    await math_loop()


@remotable
async def math_proxy(only_adds: bool) -> None:
    """MatchAny (every message, as received, on to a math server) and MatchAnyHandle
    (*only_adds*: the others are taken and dropped)."""
    server = spawn_local(math_loop)
    while True:
        msg = await receive_wait(match_any(lambda m: m))
        if not only_adds or isinstance(msg, Add):
            forward(msg, server)


@remotable
async def take_one_add_and_ignore_it(report_to: ProcessId) -> None:
    """MatchAnyNoHandle: a clause takes an `Add` and its handler does nothing with it;
    the `Add` must be gone from the mailbox all the same."""
    await receive_wait(match_if(Add, lambda a: True, lambda a: None))
    left = await receive_timeout(0.1, match(Add, lambda a: a))
    send(report_to, ("left behind", left))


def _not_bar(msg: tuple[Any, ...]) -> bool:
    return len(msg) == 2 and isinstance(msg[1], str) and msg[1] != "bar"


@remotable
async def echo_unless_bar() -> None:
    """MatchAnyIf: echo ``(pid, text)`` back to pid, but leave ``"bar"`` in the mailbox."""
    while True:
        await receive_wait(match_if(tuple, _not_bar, lambda m: send(m[0], m[1])))


@remotable
async def typed_server(reply_to: ProcessId) -> None:
    """TypedChannels: make a channel, give its send port to *reply_to*, then answer the
    ``(send_port, i)`` that comes on it with whether i is even, on that port."""
    sp, rp = new_chan()
    send(reply_to, sp)
    port, i = await receive_chan(rp)
    send_chan(port, i % 2 == 0)


@remotable
async def exit_catcher(report_to: ProcessId) -> None:
    """ExitRemote: wait forever; an exit signal is caught and reported, and the process
    then ends normally."""
    send(report_to, "ready")  # no await before the catch: a signal surfaces inside it
    caught: tuple[Any, Any] = await catch_exit(
        receive_wait, lambda sender, reason: (sender, reason)
    )
    send(report_to, ("caught", *caught))


@remotable
async def two_strings(report_to: ProcessId) -> None:
    """Reconnect: the first two strings that come, sent to *report_to* as a list."""
    got = [await expect(str), await expect(str)]
    send(report_to, got)


@remotable
async def collect_until_down(report_to: ProcessId) -> None:
    """USend: wait for a sender's pid, answer it, then take the ints it sends until it
    ends; a lost connection (`DiedDisconnect`) is not its end (monitor it again). Then
    the ints go to *report_to* as a list."""
    them = await expect(ProcessId)
    send(them, "ready")
    monitor(them)
    got: list[int] = []
    down = match(ProcessMonitorNotification, lambda n: n)
    clauses: tuple[Match[Any], ...] = (down, match(int, int))
    while True:
        msg = await receive_wait(*clauses)
        if not isinstance(msg, ProcessMonitorNotification):
            got.append(msg)
        elif msg.reason == DiedDisconnect():
            monitor(them)
        else:
            break
    send(report_to, got)


@remotable
async def waiter() -> None:
    """Ends normally on "stop", raises on "crash" (the monitor and link tests)."""
    if await expect(str) == "crash":
        raise RuntimeError("asked to crash")


@remotable
async def send_later(port: SendPort, value: Any, seconds: float) -> None:
    """ReceiveChanTimeout: `send_chan` *value* on *port* after *seconds*."""
    await asyncio.sleep(seconds)
    send_chan(port, value)


@remotable
def signal(pid: ProcessId) -> None:
    """SpawnReconnect, SpawnTerminate: send ``()`` (here: None) to *pid*."""
    send(pid, None)


@remotable
def quick() -> None:
    """A process that ends at once."""


@remotable
async def dfib(nodes: list[NodeId], reply: SendPort, n: int) -> None:
    """Fib: the n-th Fibonacci number on *reply*, each n-1 and n-2 spawned on a node
    picked at random."""
    if n < 2:
        send_chan(reply, n)
        return
    sp, rp = new_chan()
    for k in (2, 1):
        await spawn(random.choice(nodes), closure(dfib, nodes, sp, n - k))
    send_chan(reply, await receive_chan(rp) + await receive_chan(rp))


__all__ = [
    "Add",
    "DivByZero",
    "Divide",
    "Ping",
    "Pong",
    "collect_until_down",
    "dfib",
    "echo_unless_bar",
    "exit_catcher",
    "math_loop",
    "math_proxy",
    "math_server",
    "ping_loop",
    "ping_server",
    "polling_ping_server",
    "quick",
    "send_later",
    "signal",
    "take_one_add_and_ignore_it",
    "two_strings",
    "typed_server",
    "waiter",
]
