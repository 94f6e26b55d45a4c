"""Typed channels: a `SendPort` anyone may send on, a `ReceivePort` only its creator reads.

Cloud Haskell's ``newChan``/``sendChan``/``receiveChan``. Messages on one channel
arrive in the order sent; they never mix with the process's mailbox, so a
process can wait on a channel without a selective receive over everything else.
"""

from __future__ import annotations

import asyncio
from typing import Any, Generic, TypeVar, cast

from .errors import NotChannelOwnerError
from .identity import SendPort
from .node import Process, ReceivePortState, current_node, current_process

__all__ = ["ReceivePort", "new_chan", "receive_chan", "send_chan"]

T = TypeVar("T")


class ReceivePort(Generic[T]):
    """The receiving end of a typed channel: only its creator may receive on it."""

    __slots__ = ("_owner", "_state", "send_port")

    def __init__(self, owner: Process, send_port: SendPort, state: ReceivePortState) -> None:
        self._owner = owner
        self._state = state
        self.send_port = send_port

    def __repr__(self) -> str:
        return f"<ReceivePort {self.send_port!r} queued={len(self._state.queue)}>"


def new_chan() -> tuple[SendPort, ReceivePort[Any]]:
    """A new typed channel owned by the calling process: ``(send_port, receive_port)``."""
    proc = current_process()
    sp, state = current_node().new_port(proc)
    return sp, ReceivePort(proc, sp, state)


def send_chan(port: SendPort, msg: Any) -> None:
    """Send *msg* on a channel; dropped if its owner has ended."""
    proc = current_process()
    busy = current_node().send_chan(port, msg, proc)
    if busy is not None:
        proc.block(busy)


async def receive_chan(port: ReceivePort[T]) -> T:
    """Wait for and return the next message on *port*, in the order sent."""
    proc = current_process()
    if port._owner is not proc:
        raise NotChannelOwnerError("only the process that created a channel can receive on it")
    state = port._state
    while not state.queue:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiter = fut
        try:
            await proc.guard(fut)
        finally:
            state.waiter = None
    return cast(T, state.queue.popleft())
