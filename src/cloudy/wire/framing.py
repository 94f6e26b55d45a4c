"""Length-prefixed frames: a 4-byte big-endian length, then that many bytes of body.

Theory of operation
-------------------
`FrameDecoder.feed` takes whatever bytes the socket gave (any split) and returns
every complete frame body they finish, keeping the rest for next time. A length
over the limit is the peer's fault and raises `ProtocolError` at once, before we
buffer a byte of it. A zero-length frame is a heartbeat tick: it proves the peer
is alive and is counted, but not returned. Nothing here does I/O.
"""

from __future__ import annotations

from ..errors import ProtocolError

__all__ = ["DEFAULT_MAX_FRAME", "TICK", "FrameDecoder", "frame"]

HEADER = 4
# 64 MiB: large enough for any sane batch of messages, small enough that a bogus
# length from a confused or hostile peer cannot make us allocate gigabytes.
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
TICK = b"\x00\x00\x00\x00"


def frame(body: bytes) -> bytes:
    """*body* with its length prefix."""
    return len(body).to_bytes(HEADER, "big") + body


class FrameDecoder:
    """Splits a byte stream into frame bodies."""

    __slots__ = ("_buf", "max_frame", "ticks")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame
        self.ticks = 0

    def __repr__(self) -> str:
        return f"<FrameDecoder buffered={len(self._buf)} ticks={self.ticks}>"

    @property
    def buffered(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add *data*; return the bodies of all frames now complete, in order.

        Raises `ProtocolError` when a frame announces a length over ``max_frame``.
        """
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        limit = self.max_frame
        while end - pos >= HEADER:
            size = int.from_bytes(buf[pos : pos + HEADER], "big")
            if size > limit:
                raise ProtocolError(f"frame of {size} bytes exceeds the limit of {limit}")
            stop = pos + HEADER + size
            if stop > end:
                break
            if size:
                out.append(bytes(buf[pos + HEADER : stop]))
            else:
                self.ticks += 1
            pos = stop
        if pos:
            del buf[:pos]
        return out
