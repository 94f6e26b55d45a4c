"""Functions and message types that the remote tests run on nodes in other OS processes.

Imported by name (``remote_funcs``) both in the test process and in each node
process, so the message types carry the same tags on both sides.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cloudy import (
    Message,
    ProcessId,
    ReceivePort,
    SendPort,
    expect,
    get_self_pid,
    receive_chan,
    register,
    remotable,
    say,
    send,
    send_chan,
)


class Echo(Message):
    reply_to: ProcessId
    payload: Any


class Stop(Message):
    pass


class Sample(Message):
    i: int
    x: float
    anything: Any = None


class Crash(Message):
    text: str


async def echo_loop() -> None:
    while True:
        msg = await expect(Echo)
        send(msg.reply_to, msg.payload)


async def setup() -> None:
    """Run by `cloudy.testing` at start: an echo process registered as "echo"."""
    register("echo", get_self_pid())
    await echo_loop()


@remotable
async def echo_server() -> None:
    await echo_loop()


@remotable
def add(a: int, b: int) -> int:
    return a + b


@remotable
async def slow_add(a: int, b: int, seconds: float) -> int:
    await asyncio.sleep(seconds)
    return a + b


@remotable
def fail(text: str) -> None:
    raise ValueError(text)


@remotable
def send_on(port: SendPort, values: list[Any]) -> None:
    for value in values:
        send_chan(port, value)


@remotable
async def waiter() -> None:
    """Waits for Stop (ends normally) or Crash (raises)."""
    msg = await expect(Stop | Crash)  # type: ignore[arg-type]
    if isinstance(msg, Crash):
        raise RuntimeError(msg.text)


@remotable
async def chan_relay(reply_to: ProcessId, port: ReceivePort[Any]) -> None:
    """Sends *reply_to* what arrives on its channel (`spawn_channel`), until "stop"."""
    while (msg := await receive_chan(port)) != "stop":
        send(reply_to, msg)


@remotable
def send_typed(port: SendPort, value: Any) -> str:
    """`send_chan` of *value* on *port*, from this node: what happened, as text."""
    try:
        send_chan(port, value)
    except TypeError as e:
        return f"refused: {e}"
    return "sent"


@remotable
def say_here(text: str) -> str:
    """`say` *text* on the node it runs on (to its "logger", wherever that points)."""
    say(text)
    return text
