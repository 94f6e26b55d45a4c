"""Length-prefixed frames: a 4-byte big-endian length, then that many bytes of body.

Theory of operation
-------------------
`FrameDecoder.feed` takes whatever bytes the socket gave (any split) and returns
every complete frame body they finish, keeping the rest for next time. A length
over the limit is the peer's fault and raises `ProtocolError` at once, before we
buffer a byte of it. A zero-length frame is a heartbeat tick: it proves the peer
is alive and is counted, but not returned. Nothing here does I/O.

The limit (``max_frame``) may change between calls: a connection starts at
`HANDSHAKE_MAX_FRAME`, all a handshake needs, so that a peer that has not proved
it knows the cookie cannot make us buffer megabytes, and raises it to the node's
frame limit once authenticated. As a frame over the limit may follow frames that
change the limit (the last handshake frame, then the first message), `feed`
returns the frames before it and raises on the next call, if the limit is still
too low then.
"""

from __future__ import annotations

from ..errors import ProtocolError

__all__ = ["DEFAULT_MAX_FRAME", "HANDSHAKE_MAX_FRAME", "TICK", "FrameDecoder", "frame"]

HEADER = 4
# 64 MiB: large enough for any sane batch of messages, small enough that a bogus
# length from a confused or hostile peer cannot make us allocate gigabytes.
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
# 4 KiB: the largest handshake frame (a Hello with a 253-byte host name, a Refuse
# with its reason) is a few hundred bytes; the limit before authentication.
HANDSHAKE_MAX_FRAME = 4 * 1024
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

        Raises `ProtocolError` when a frame announces a length over ``max_frame``
        (or, when complete frames come before it, on the next call: the limit may
        be raised in between).
        """
        buf = self._buf
        if not buf and len(data) >= HEADER:  # the common case: one whole frame
            size = int.from_bytes(data[:HEADER], "big")
            if len(data) == HEADER + size and 0 < size <= self.max_frame:
                return [bytes(data[HEADER:])]
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        limit = self.max_frame
        while end - pos >= HEADER:
            size = int.from_bytes(buf[pos : pos + HEADER], "big")
            if size > limit:
                if out:
                    break
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
