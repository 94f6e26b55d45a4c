"""One end of a simulated connection: an asyncio transport over the world's segments.

An `End` behaves towards its protocol as asyncio's socket transports do:
`connection_made`, `data_received`, `eof_received`, `connection_lost` (None after a
close or FIN, `ConnectionResetError` after a reset), `pause_writing` and
`resume_writing`; `pause_reading` leaves what arrives in the end's inbox (the kernel's
receive buffer) until `resume_reading`. A writer whose bytes the peer's protocol has
not read pass the high-water mark is told to pause, and to resume once they fall to
the low mark (the word travels back as a segment), so backpressure reaches the
sender as full kernel buffers would carry it.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import zlib
from typing import TYPE_CHECKING, Any

from .base import Segments

if TYPE_CHECKING:
    from .loop import SimLoop

__all__ = ["FIN", "End"]

FIN = b"\0FIN"  # the inbox's end-of-stream marker (never equal to data: compared by identity)
# The most bytes one `data_received` gets (the kernel's reads are bounded too).
READ_CHUNK = 256 * 1024


class End(asyncio.Transport):
    """One side of a simulated connection."""

    def __init__(self, net: Segments, loop: SimLoop, local: tuple[str, int]) -> None:
        super().__init__()
        self.net, self.loop = net, loop
        self.local = local
        self.remote: tuple[str, int] = ("?", 0)
        self.peer: End | None = None  # the other end, once the dial reached it
        self.protocol: Any = None
        self.inbox: collections.deque[bytes] = collections.deque()
        self.open = True  # False once closed, aborted, reset or its node crashed
        self.reading_paused = False
        self.writing_paused = False
        self.unread = 0  # bytes written that the peer's protocol has not read yet
        self.high, self.low = 64 * 1024, 16 * 1024
        self._flushing = False
        self.last = 0.0  # delivery time of the last segment sent from here (FIFO)
        self.held: list[tuple[str, Any]] = []  # segments waiting for a cut path to heal

    def __repr__(self) -> str:
        return f"<End {self.local} -> {self.remote} {'open' if self.open else 'closed'}>"

    # --- asyncio.Transport -------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.remote, "sockname": self.local}.get(name, default)

    def is_closing(self) -> bool:
        return not self.open

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol  # type: ignore[no-any-return]

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = 64 * 1024 if high is None else high
        self.low = self.high // 4 if low is None else low

    def get_write_buffer_size(self) -> int:
        return self.unread

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.open or not data:
            return
        data = bytes(data)
        self.unread += len(data)
        self.loop.bytes += len(data)
        self.net.send(self, "data", data)
        if not self.writing_paused and self.unread > self.high:
            self.writing_paused = True
            self.protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        if self.reading_paused:
            self.reading_paused = False
            self._want_flush()

    def is_reading(self) -> bool:
        return not self.reading_paused

    def close(self) -> None:
        """Close: what was written still arrives, then the peer reads end-of-stream."""
        if self.open:
            self.open = False
            self.net.send(self, "fin", None)
            self.loop.call_soon(self._lost, None)

    def abort(self) -> None:
        """Drop the connection at once: the peer is reset."""
        if self.open:
            self.open = False
            self.inbox.clear()
            self.net.send(self, "rst", None)
            self.loop.call_soon(self._lost, None)

    # --- what arrives (run by the world; `_flush` and the rest on this end's loop) ------

    def arrive(self, kind: str, payload: Any) -> None:
        """A segment reached this end's host."""
        if kind in ("data", "fin"):
            if not self.open or self.loop.crashed:
                if kind == "data":  # a closed socket (or a killed process's) resets
                    self.net.send(self, "rst", None)
                return
            self.inbox.append(FIN if kind == "fin" else payload)
            self._want_flush()
        elif self.loop.crashed:
            return
        elif kind == "rst":
            self.inbox.clear()
            if self.open:
                self.open = False
                self.loop.call_soon(self._lost, ConnectionResetError(errno.ECONNRESET, "reset"))
        elif kind == "ack":
            self.loop.call_soon(self._acked)

    def _want_flush(self) -> None:
        if not self._flushing and self.protocol is not None and self.inbox:
            self._flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        inbox = self.inbox
        while inbox and self.open and not self.reading_paused:
            if inbox[0] is FIN:
                inbox.popleft()
                keep = self.protocol.eof_received()
                if not keep:
                    self.open = False
                    self.net.send(self, "fin", None)
                    self._lost(None)
                return
            chunk = [inbox.popleft()]
            size = len(chunk[0])
            while inbox and inbox[0] is not FIN and size < READ_CHUNK:
                size += len(inbox[0])
                chunk.append(inbox.popleft())
            data = chunk[0] if len(chunk) == 1 else b"".join(chunk)
            self.net.world.record("read", self.loop.name, self.remote, len(data), zlib.crc32(data))
            self._consumed(len(data))
            self.loop.bytes += len(data)
            self.protocol.data_received(data)
            self._continue()  # one read per turn, as a selector loop does; the rest next turn
            return

    def _consumed(self, size: int) -> None:
        """The peer's protocol read *size* bytes of what the writer sent: the writer's
        count of unread bytes drops (were it paused, its resume travels back to it)."""
        writer = self.peer
        if writer is None:
            return
        writer.unread -= size
        if writer.writing_paused and writer.unread <= writer.low:
            self.net.send(self, "ack", None)

    def _continue(self) -> None:
        if self.inbox and self.open and not self.reading_paused:
            self._want_flush()

    def _acked(self) -> None:
        if self.writing_paused and self.unread <= self.low and self.open:
            self.writing_paused = False
            self.protocol.resume_writing()

    def _lost(self, exc: Exception | None) -> None:
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connection_lost(exc)

    def reset(self) -> None:
        """The network reset the connection: both ends are told (the peer by a RST)."""
        if self.open:
            self.open = False
            self.inbox.clear()
            self.net.send(self, "rst", None)
            self.loop.call_soon(self._lost, ConnectionResetError(errno.ECONNRESET, "reset"))

    def crash(self) -> None:
        """Its node was killed: the kernel closes the socket (a reset if data was unread)."""
        if self.open:
            self.open = False
            self.net.send(self, "rst" if self.inbox else "fin", None)
        self.inbox.clear()
