"""Checked, length-prefixed frames: a 12-byte header — the body's length (4 bytes, big
-endian), its CRC-32, and the CRC-32 of those 8 bytes — then the body.

Theory of operation
-------------------
`FrameDecoder.feed` takes whatever bytes the socket gave (any split) and returns
every complete frame body they finish, keeping the rest for next time. A length
over the limit is the peer's fault and raises `ProtocolError` at once, as soon as
its four bytes are in, before we buffer a byte of the body. The header's own CRC-32
is checked before we wait for the body, so that a damaged length can never make us
wait for bytes that will not come (taking the frames after it, heartbeats and all,
for its body). A body whose CRC-32 is not the one its header gives was damaged on
the way (TCP's own 16-bit checksum lets about one damaged segment in 65,536 through,
and a middlebox or a bad NIC may damage bytes after it was checked). Either raises
`DamagedFrame`, and the connection closes, as if it had broken: a damaged message
is never delivered. A zero-length frame is a heartbeat tick (`TICK`): it proves the
peer is alive and is counted, but not returned. Nothing here does I/O.

The limit (``max_frame``) may change between calls: a connection starts at
`HANDSHAKE_MAX_FRAME`, all a handshake needs, so that a peer that has not proved
it knows the cookie cannot make us buffer megabytes, and raises it to the node's
frame limit once authenticated. As a frame over the limit may follow frames that
change the limit (the last handshake frame, then the first message), `feed`
returns the frames before it and raises on the next call, if the limit is still
too low then.
"""

from __future__ import annotations

import struct
from zlib import crc32

from ..errors import ProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "HANDSHAKE_MAX_FRAME",
    "HEADER",
    "TICK",
    "DamagedFrame",
    "FrameDecoder",
    "frame",
]

_HEAD = struct.Struct(">III")
_LENGTH_CRC = struct.Struct(">II")
_CHECKED = 8  # the header's bytes its own CRC-32 covers: the length and the body's CRC
HEADER = _HEAD.size
_LENGTH = 4
# 64 MiB: large enough for any sane batch of messages, small enough that a bogus
# length from a confused or hostile peer cannot make us allocate gigabytes.
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
# 4 KiB: the largest handshake frame (a Hello with a 253-byte host name, a Refuse
# with its reason) is a few hundred bytes; the limit before authentication.
HANDSHAKE_MAX_FRAME = 4 * 1024
TICK = bytes(_CHECKED) + crc32(bytes(_CHECKED)).to_bytes(4, "big")


class DamagedFrame(ProtocolError):
    """A frame whose header or body does not have the CRC-32 the header gives."""


def frame(body: bytes) -> bytes:
    """*body* with its header: length, CRC-32, and the header's own CRC-32."""
    head = _LENGTH_CRC.pack(len(body), crc32(body))
    return head + crc32(head).to_bytes(4, "big") + body


def _damaged(size: int, want: int, got: int) -> DamagedFrame:
    return DamagedFrame(
        f"a frame of {size} bytes was damaged in transit "
        f"(CRC-32 {got:08x}, its header says {want:08x})"
    )


def _bad_header(head: bytes | bytearray | memoryview) -> DamagedFrame:
    return DamagedFrame(f"a frame header was damaged in transit ({bytes(head).hex()})")


class FrameDecoder:
    """Splits a byte stream into frame bodies, each checked against its CRC-32."""

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
        be raised in between), and `DamagedFrame` when a header or a body fails its
        CRC-32 (the frames before it are lost with the connection).
        """
        buf = self._buf
        if not buf and len(data) >= HEADER:  # the common case: one whole frame
            size, want, check = _HEAD.unpack_from(data)
            if len(data) == HEADER + size and 0 < size <= self.max_frame:
                body = bytes(data[HEADER:])
                if crc32(body) == want and crc32(data[:_CHECKED]) == check:
                    return [body]
        buf += data
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        limit = self.max_frame
        while end - pos >= _LENGTH:
            size = int.from_bytes(buf[pos : pos + _LENGTH], "big")
            if size > limit:
                if out:
                    break
                raise ProtocolError(f"frame of {size} bytes exceeds the limit of {limit}")
            if end - pos < HEADER:
                break
            size, want, check = _HEAD.unpack_from(buf, pos)
            if crc32(buf[pos : pos + _CHECKED]) != check:
                raise _bad_header(buf[pos : pos + HEADER])
            stop = pos + HEADER + size
            if stop > end:
                break
            if size:
                body = bytes(buf[pos + HEADER : stop])
                if crc32(body) != want:
                    raise _damaged(size, want, crc32(body))
                out.append(body)
            else:
                self.ticks += 1
            pos = stop
        if pos:
            del buf[:pos]
        return out
