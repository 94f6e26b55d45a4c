"""A node's traffic counters: what crossed its connections, and what went wrong there.

Theory of operation
-------------------
Counting must cost next to nothing where messages go by, so each `Connection` keeps
its own four plain integers (bytes counted per socket read and write, items per
frame), and this object keeps the rest: the sums of the connections already closed
(`retire` adds them when one closes), the losses, the heartbeats missed and the
frames or connections refused, by reason. A node's totals are these sums plus its
live connections' own.

Everything here is read and written on the node's event loop only; a reader in
another thread asks the loop for a snapshot (see ``cloudy.observe.metrics``).
"""

from __future__ import annotations

import collections
from typing import Protocol

from .. import clock

__all__ = [
    "BAD_COOKIE",
    "DAMAGED",
    "HANDSHAKE_TIMEOUT",
    "MALFORMED",
    "OVER_CAP",
    "STALE_PID",
    "TOO_LARGE",
    "UNDECODABLE",
    "UNDECODABLE_MESSAGE",
    "VERSION",
    "Counted",
    "Traffic",
]

# Why a frame or a connection was refused: the labels of `Traffic.refused`.
BAD_COOKIE = "bad cookie"  # a handshake proof that does not match our cookie
VERSION = "version"  # a handshake of another protocol version
MALFORMED = "malformed handshake"  # bytes that are not cloudy's handshake
TOO_LARGE = "frame too large"  # a frame over the limit (the handshake's, or the node's)
DAMAGED = "damaged frame"  # a frame that fails its CRC-32: its connection closes
HANDSHAKE_TIMEOUT = "handshake timeout"  # accepted, but no handshake in time
OVER_CAP = "too many handshakes"  # dropped over the cap of connections in handshake
UNDECODABLE = "undecodable"  # a frame that is not a list of items: its connection closes
UNDECODABLE_MESSAGE = "undecodable message"  # one message dropped, the rest delivered
# addressed to a pid (or a request) of another creation of this node (counted by the
# node's process table, which refuses them, and added to the node's stats)
STALE_PID = "stale pid"


class Counted(Protocol):
    """What a connection counts of its own traffic."""

    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int


class Traffic:
    """The counters of one node's transport (see the module's docstring)."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "connection_losses",
        "heartbeats_missed",
        "messages_in",
        "messages_out",
        "refused",
        "started",
    )

    def __init__(self) -> None:
        self.started = clock.now()
        # the sums of the connections already closed
        self.bytes_in = 0
        self.bytes_out = 0
        self.messages_in = 0
        self.messages_out = 0
        self.connection_losses = 0
        self.heartbeats_missed = 0
        self.refused: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return (
            f"<Traffic in={self.messages_in} out={self.messages_out} "
            f"losses={self.connection_losses} refused={self.refused.total()}>"
        )

    def refuse(self, reason: str) -> None:
        """Count a frame or connection refused for *reason* (one of the labels above)."""
        self.refused[reason] += 1

    def retire(self, conn: Counted) -> None:
        """*conn* closed: add its counts to the sums."""
        self.bytes_in += conn.bytes_in
        self.bytes_out += conn.bytes_out
        self.messages_in += conn.messages_in
        self.messages_out += conn.messages_out
