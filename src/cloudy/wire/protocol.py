"""What nodes say to each other once connected: a closed set of signals.

Theory of operation
-------------------
After the handshake every frame body is one msgpack array of *items*, each item
one of the tagged Structs below (small integer tags keep them short). A node
gathers all items for a peer during one event-loop iteration into one frame, so
a burst of sends costs one encode call and one socket write, and the receiver
decodes the whole batch with one call.

User payloads sit in ``Any``-typed fields and are walked by `codec.to_wire`, so
they come back as the types they were. Control items carry only declared types.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..identity import MonitorRef, ProcessId
from ..messages import AnyDiedReason
from .codec import ext_hook

__all__ = [
    "ChanSend",
    "Died",
    "Exit",
    "Fragment",
    "Item",
    "Monitor",
    "NSend",
    "Reply",
    "Send",
    "SpawnRequest",
    "Unmonitor",
    "WhereIs",
    "decode_items",
    "encode_items",
]


class _Item(msgspec.Struct, array_like=True):
    pass


class Send(_Item, tag=0):
    """Deliver *payload* to local process *lid* of the node's *creation*."""

    lid: int
    creation: int
    payload: Any


class NSend(_Item, tag=1):
    """Deliver *payload* to the process registered as *name*."""

    name: str
    payload: Any


class ChanSend(_Item, tag=2):
    """Deliver *payload* to channel *cid* of local process *lid* (of *creation*)."""

    lid: int
    creation: int
    cid: int
    payload: Any


class Monitor(_Item, tag=3):
    """*watcher* (on the sender's node) monitors (or links to, if *link*) local *target*."""

    ref: MonitorRef
    watcher: ProcessId
    target: ProcessId
    link: bool


class Unmonitor(_Item, tag=4):
    """Drop the monitor *ref* on local *target*."""

    ref: MonitorRef
    target: ProcessId


# tag 5 was Unlink, never sent: unlinking drops the link's monitor (`Unmonitor`)


class Died(_Item, tag=6):
    """*target* ended for *reason*; tell *watcher* through monitor (or link) *ref*."""

    ref: MonitorRef
    watcher: ProcessId
    target: ProcessId
    reason: AnyDiedReason
    link: bool


class Exit(_Item, tag=7):
    """Raise an exit in local *target* (*kill*: end it unconditionally)."""

    target: ProcessId
    sender: ProcessId
    reason: Any
    kill: bool


class SpawnRequest(_Item, tag=8):
    """Run closure *name*(*args*) in a new process; answer with `Reply` *req*.

    With *call* the answer carries the function's result (or error) when it ends,
    otherwise the new pid as soon as it exists. *creation* is the asking node's, for
    the `Reply` to carry back: a reply reaches only the run of that node that asked.
    """

    req: int
    creation: int
    name: str
    args: Any
    call: bool


class Reply(_Item, tag=9):
    """The answer to request *req* of the asking node's *creation*: *value* on
    success, else *error*."""

    req: int
    creation: int
    value: Any
    error: str | None


class WhereIs(_Item, tag=10):
    """Look up *name* and send a `WhereIsReply` to *reply_to*."""

    name: str
    reply_to: ProcessId


class Dropped(_Item, tag=11):
    """A message this node sent could not be decoded there (an unknown message type,
    say): *cause* says why. Sent back so that the sender's side hears of it too."""

    cause: str


class Fragment(_Item, tag=12):
    """A part of a frame body too large for one frame: a message over the frame limit
    travels as parts, each alone in a frame, in order on one connection; *last* marks
    the final part, when the whole body is decoded and its items handled."""

    chunk: memoryview  # (decoded as a view of its frame: the parts are copied once)
    last: bool


Item = (
    Send
    | NSend
    | ChanSend
    | Monitor
    | Unmonitor
    | Died
    | Exit
    | SpawnRequest
    | Reply
    | WhereIs
    | Dropped
    | Fragment
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[list[Item]] = msgspec.msgpack.Decoder(
    list[Item], ext_hook=ext_hook
)


def encode_items(items: list[Item]) -> bytes:
    """One frame body holding *items*."""
    return _encoder.encode(items)


def decode_items(body: bytes | bytearray | memoryview) -> list[Item]:
    """The items of one frame body. Raises `msgspec.DecodeError`/`ValidationError`."""
    return _decoder.decode(body)
