"""Typed channels: a `SendPort` anyone may send on, a `ReceivePort` its node's processes read.

Cloud Haskell's ``newChan``/``sendChan``/``receiveChan``. Messages on one channel
arrive in the order sent; they never mix with the process's mailbox, so a
process can wait on a channel without a selective receive over everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Generic, TypeVar, cast

from .errors import NotChannelOwnerError
from .identity import SendPort
from .node import ReceivePortState, current_node, current_process

__all__ = ["ReceivePort", "new_chan", "receive_chan", "receive_chan_timeout", "send_chan"]

T = TypeVar("T")


class ReceivePort(Generic[T]):
    """The receiving end of a typed channel: any process of its node holding it may
    receive on it (while its creator lives: the channel's messages go to it)."""

    __slots__ = ("_node", "_state", "send_port")

    def __init__(self, node: object, send_port: SendPort, state: ReceivePortState) -> None:
        self._node = node
        self._state = state
        self.send_port = send_port

    def __repr__(self) -> str:
        return f"<ReceivePort {self.send_port!r} queued={len(self._state.queue)}>"


def new_chan() -> tuple[SendPort, ReceivePort[Any]]:
    """A new typed channel owned by the calling process: ``(send_port, receive_port)``."""
    node = current_node()
    sp, state = node.new_port(current_process())
    return sp, ReceivePort(node, sp, state)


def send_chan(port: SendPort, msg: Any) -> None:
    """Send *msg* on a channel; dropped if its owner has ended."""
    proc = current_process()
    busy = current_node().send_chan(port, msg, proc)
    if busy is not None:
        proc.block(busy)


async def receive_chan(port: ReceivePort[T]) -> T:
    """Wait for and return the next message on *port*, in the order sent."""
    msg = await _receive_chan(port, None)
    return cast(T, msg)


async def receive_chan_timeout(port: ReceivePort[T], seconds: float) -> T | None:
    """The next message on *port*, or None if none arrives within *seconds* (0: only
    one already there). Cloud Haskell's ``receiveChanTimeout``."""
    return await _receive_chan(port, seconds)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def _receive_chan(port: ReceivePort[T], seconds: float | None) -> T | None:
    proc = current_process()
    if port._node is not current_node():
        raise NotChannelOwnerError("a ReceivePort is received on by processes of its own node")
    state = port._state
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    while not state.queue:
        if deadline is not None and deadline <= loop.time():
            return None
        fut: asyncio.Future[None] = loop.create_future()
        state.waiters.append(fut)
        timer = None if deadline is None else loop.call_at(deadline, _wake, fut)
        try:
            await proc.guard(fut)
        finally:
            if timer is not None:
                timer.cancel()
            with contextlib.suppress(ValueError):  # still waiting: no longer
                state.waiters.remove(fut)
    msg = state.queue.popleft()
    if state.queue:  # more: the next one waiting need not wait
        state.wake_one()
    return cast(T, msg)
