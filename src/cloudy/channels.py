"""Typed channels: a `SendPort` anyone may send on, a `ReceivePort` its node's processes read.

Cloud Haskell's ``newChan``/``sendChan``/``receiveChan``/``receiveChanTimeout`` and
``mergePortsBiased``/``mergePortsRR``. Messages on one channel
arrive in the order sent; they never mix with the process's mailbox, so a
process can wait on a channel without a selective receive over everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, cast, overload

import msgspec

from .errors import NotChannelOwnerError
from .identity import SendPort
from .node import Match, ReceivePortState, current_node, current_process
from .node.waiting import waits_in

__all__ = [
    "MergedPort",
    "ReceivePort",
    "kind_of",
    "match_chan",
    "merge_ports_biased",
    "merge_ports_rr",
    "new_chan",
    "receive_chan",
    "receive_chan_timeout",
    "send_chan",
]

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

    def _pop(self) -> tuple[bool, Any]:
        """Take the next message if one is there: ``(True, msg)``, else ``(False, None)``."""
        state = self._state
        if not state.queue:
            return False, None
        msg = state.queue.popleft()
        if state.queue:  # more: the next one waiting need not wait
            state.wake_one()
        return True, msg

    def _states(self) -> list[ReceivePortState]:
        """The queues a receiver waits on."""
        return [self._state]

    def _nodes(self) -> list[object]:
        return [self._node]


class MergedPort(ReceivePort[T]):
    """Several receive ports read as one (`merge_ports_biased`, `merge_ports_rr`):
    the first of them that has a message, in their order or taking turns."""

    __slots__ = ("_next", "_ports", "_turns")

    def __init__(self, ports: Sequence[ReceivePort[T]], turns: bool) -> None:
        if not ports:
            raise ValueError("merging no ports")
        self._ports = list(ports)
        self._turns = turns
        self._next = 0
        self.send_port = self._ports[0].send_port

    def __repr__(self) -> str:
        how = "round-robin" if self._turns else "biased"
        return f"<MergedPort {how} of {self._ports!r}>"

    def _pop(self) -> tuple[bool, Any]:
        n = len(self._ports)
        for k in range(n):
            i = (self._next + k) % n if self._turns else k
            found, msg = self._ports[i]._pop()
            if found:
                if self._turns:
                    self._next = (i + 1) % n
                return True, msg
        return False, None

    def _states(self) -> list[ReceivePortState]:
        return [state for port in self._ports for state in port._states()]

    def _nodes(self) -> list[object]:
        return [node for port in self._ports for node in port._nodes()]


def match_chan(port: ReceivePort[T], handler: Callable[[T], Any] = lambda msg: msg) -> Match[Any]:
    """A clause of `receive_wait` / `receive_timeout` that takes the next message of
    *port*, so that one receive waits on a channel and the mailbox together (Cloud
    Haskell's ``matchChan``); *handler* turns it into the result. Clauses are tried in
    the order given: a channel clause takes its channel's next message, mailbox clauses
    the first message in the mailbox they accept (as in Cloud Haskell)."""
    return Match(None, None, handler, port)


def merge_ports_biased(ports: Sequence[ReceivePort[T]]) -> ReceivePort[T]:
    """One port that receives from *ports*, always from the first that has a message
    (Cloud Haskell's ``mergePortsBiased``); the ports stay usable on their own."""
    return MergedPort(ports, turns=False)


def merge_ports_rr(ports: Sequence[ReceivePort[T]]) -> ReceivePort[T]:
    """One port that receives from *ports* taking turns: after a message from one, the
    next that has one (Cloud Haskell's ``mergePortsRR``)."""
    return MergedPort(ports, turns=True)


@overload
def new_chan() -> tuple[SendPort, ReceivePort[Any]]: ...
@overload
def new_chan(element: type[T]) -> tuple[SendPort, ReceivePort[T]]: ...
def new_chan(element: type[Any] | None = None) -> tuple[SendPort, ReceivePort[Any]]:
    """A new typed channel owned by the calling process: ``(send_port, receive_port)``.

    With *element* (a `Message` subclass or a plain type such as ``int`` or ``str``),
    the channel takes only that type: `send_chan` of anything else raises `TypeError`
    at the sender, on any node.
    """
    node = current_node()
    sp, state = node.new_port(current_process())
    if element is not None:
        sp = msgspec.structs.replace(sp, kind=kind_of(element))
    return sp, ReceivePort(node, sp, state)


def kind_of(tp: type) -> str:
    """The name a channel's element type travels under: a message's tag, or a plain
    type's name."""
    config = getattr(tp, "__struct_config__", None)
    tag = getattr(config, "tag", None)
    return tag if isinstance(tag, str) else tp.__name__


def send_chan(port: SendPort, msg: Any) -> None:
    """Send *msg* on a channel; dropped if its owner has ended. Raises `TypeError` if
    the channel names its element type and *msg* is not of it."""
    if port.kind is not None and kind_of(type(msg)) != port.kind:
        raise TypeError(f"{port!r} takes {port.kind}, not {kind_of(type(msg))}")
    proc = current_process()
    busy = current_node().send_chan(port, msg, proc)
    proc.messages_out += 1
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


@waits_in("receive_chan")
async def _receive_chan(port: ReceivePort[T], seconds: float | None) -> T | None:
    proc = current_process()
    node = current_node()
    if any(owner is not node for owner in port._nodes()):
        raise NotChannelOwnerError("a ReceivePort is received on by processes of its own node")
    loop = asyncio.get_running_loop()
    deadline = None if seconds is None else loop.time() + seconds
    while True:
        found, msg = port._pop()
        if found:
            return cast(T, msg)
        if deadline is not None and deadline <= loop.time():
            return None
        fut: asyncio.Future[None] = loop.create_future()
        states = port._states()
        for state in states:
            state.waiters.append(fut)
        timer = None if deadline is None else loop.call_at(deadline, _wake, fut)
        try:
            await proc.guard(fut)
        finally:
            if timer is not None:
                timer.cancel()
            for state in states:
                with contextlib.suppress(ValueError):  # still waiting: no longer
                    state.waiters.remove(fut)
