"""The bare floor: one asyncio TCP connection, length-prefixed msgspec frames, no cloudy.

Shared by stream.py and pingpong.py. Writes are coalesced (the sender joins many
frames into one write) and frames are decoded in bulk, as the best hand-written
link between two Python processes would do.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any, cast

import msgspec

HEADER = struct.Struct(">I")


class FrameProtocol(asyncio.Protocol):
    """Calls *on_bodies* with every batch of complete frame bodies received."""

    def __init__(self, on_bodies: Callable[[list[bytes]], None]) -> None:
        self.on_bodies = on_bodies
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end, out = 0, len(buf), []
        while end - pos >= 4:
            (size,) = HEADER.unpack_from(buf, pos)
            if end - pos - 4 < size:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        del buf[:pos]
        if out:
            self.on_bodies(out)

    def write_bodies(self, bodies: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.write(b"".join(HEADER.pack(len(b)) + b for b in bodies))


def encoder() -> msgspec.msgpack.Encoder:
    return msgspec.msgpack.Encoder()


def decoder(tp: Any) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(tp)


async def serve(proto: FrameProtocol) -> None:
    """A child's bare server: one connection handled by *proto*; prints "ready PORT"."""
    server = await asyncio.get_running_loop().create_server(lambda: proto, "127.0.0.1", 0)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
