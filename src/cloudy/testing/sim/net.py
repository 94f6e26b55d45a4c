"""The simulated network: listeners, connections as pairs of in-memory ends, and paths
that the world's faults delay, cut and heal.

A connection is two `End`s (asyncio transports) joined by two one-way pipes. What one
end writes travels as segments — data, FIN, RST, acknowledgements — each delivered at
a virtual time drawn from the world's latency for its path, never before the segment
sent ahead of it (a stream keeps its order, as TCP does). A path that is cut holds its
segments until it heals, as TCP's retransmissions would bring them then. Each end is
an asyncio transport (``stream.py``).
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import WorldView
from .stream import End

if TYPE_CHECKING:
    from .loop import SimLoop

__all__ = ["Network", "SimServer"]

# The first ports handed out by `listen(port=0)` and to a dialler's end.
FIRST_LISTEN_PORT = 40000
FIRST_EPHEMERAL_PORT = 50000


class _Sock:
    """What `Server.sockets` shows of a listener: its address."""

    def __init__(self, host: str, port: int) -> None:
        self._name = (host, port)

    def getsockname(self) -> tuple[str, int]:
        return self._name


class SimServer(asyncio.AbstractServer):
    """A listener on a simulated host:port."""

    def __init__(
        self, net: Network, loop: SimLoop, factory: Callable[[], Any], host: str, port: int
    ) -> None:
        self.net, self.loop, self.factory = net, loop, factory
        self.host, self.port = host, port
        self.serving = True
        self.sockets = [_Sock(host, port)]

    def close(self) -> None:
        if self.serving:
            self.serving = False
            self.net.listeners.pop((self.host, self.port), None)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self.loop

    def is_serving(self) -> bool:
        return self.serving

    async def start_serving(self) -> None:
        pass

    async def serve_forever(self) -> None:
        raise NotImplementedError("a simulated server serves from the start")

    async def wait_closed(self) -> None:
        pass


class Network:
    """Every listener and connection of a world, and the state of each path."""

    def __init__(self, world: WorldView) -> None:
        self.world = world
        self.listeners: dict[tuple[str, int], SimServer] = {}
        self.ends: list[End] = []
        self.cut_paths: set[tuple[str, str]] = set()  # (from host, to host)
        self._held: list[End] = []  # ends with segments waiting for a path to heal
        self._next_port: dict[tuple[str, int], int] = {}  # (host, first) -> next
        # faults on bytes, armed per path: each takes the next data segment on it
        self.corrupt: dict[tuple[str, str], str] = {}  # path -> "flip" | "truncate"

    # --- listening and dialling ----------------------------------------------------------

    def listen(self, loop: SimLoop, factory: Callable[[], Any], host: str, port: int) -> SimServer:
        if port == 0:
            port = self._port(host, FIRST_LISTEN_PORT)
        if (host, port) in self.listeners:
            raise OSError(errno.EADDRINUSE, f"[Errno 98] address already in use: {host}:{port}")
        server = self.listeners[(host, port)] = SimServer(self, loop, factory, host, port)
        self.world.record("listen", loop.name, host, port)
        return server

    def _port(self, host: str, first: int) -> int:
        port = self._next_port.get((host, first), first)
        while (host, port) in self.listeners:
            port += 1
        self._next_port[(host, first)] = port + 1
        return port

    async def connect(
        self, loop: SimLoop, factory: Callable[[], Any], host: str, port: int
    ) -> tuple[End, Any]:
        """Dial *host*:*port* from *loop*'s node: the SYN travels, a listener answers
        (or the host resets us), and the connection is made on both sides."""
        me = End(self, loop, (loop.host, self._port(loop.host, FIRST_EPHEMERAL_PORT)))
        me.remote = (host, port)
        done: asyncio.Future[tuple[End, Any]] = loop.create_future()
        self.ends.append(me)
        self.send(me, "syn", (factory, done))
        try:
            return await done
        except BaseException:
            me.abort()  # (given up: a late SYN-ACK finds this end closed, and resets)
            raise

    def _syn(self, client: End, factory: Callable[[], Any], done: asyncio.Future[Any]) -> None:
        """The SYN reached the host it was sent to."""
        server = self.listeners.get(client.remote)
        if server is None or server.loop.crashed:
            self._answer(client, lambda: _refused(done))
            return
        end = End(self, server.loop, client.remote)
        end.remote, end.peer, client.peer = client.local, client, end
        self.ends.append(end)
        server.loop.call_soon(_accept, end, server.factory)
        self.send(end, "synack", (factory, done))

    def _answer(self, client: End, fn: Callable[[], None]) -> None:
        """An answer from the dialled host's kernel (a reset) travels back to *client*."""
        delay = self.world.latency(client.remote[0], client.local[0])
        self.world.after(delay, lambda: None if client.loop.crashed else client.loop.call_soon(fn))

    def _synack(self, client: End, factory: Callable[[], Any], done: asyncio.Future[Any]) -> None:
        if not client.open or done.done():  # it gave up meanwhile: reset the other side
            self.send(client, "rst", None)
            return
        protocol = factory()
        client.protocol = protocol
        protocol.connection_made(client)
        if not done.done():
            done.set_result((client, protocol))
        client._continue()

    # --- segments ---------------------------------------------------------------------

    def send(self, end: End, kind: str, payload: Any) -> None:
        """Send a segment from *end* towards its peer (or its dialled address)."""
        src, dst = end.local[0], end.remote[0]
        if (src, dst) in self.cut_paths or end.held:
            if not end.held:
                self._held.append(end)
            end.held.append((kind, payload))
            return
        self._schedule(end, kind, payload)

    def _schedule(self, end: End, kind: str, payload: Any) -> None:
        world = self.world
        at = max(world.now + world.latency(end.local[0], end.remote[0]), end.last)
        end.last = at
        world.at(at, self._deliver, end, kind, payload)

    def _deliver(self, end: End, kind: str, payload: Any) -> None:
        if kind == "syn":
            self._syn(end, *payload)
            return
        peer = end.peer
        if peer is None:
            return
        if kind == "synack":
            if not peer.loop.crashed:
                peer.loop.call_soon(self._synack, peer, *payload)
            return
        if kind == "data":
            path = (end.local[0], end.remote[0])
            how = self.corrupt.pop(path, None)
            if how is not None:
                payload = self._damage(peer, how, payload)
        peer.arrive(kind, payload)

    def _damage(self, peer: End, how: str, data: bytes) -> bytes:
        rng = self.world.rng
        self.world.record("damage", peer.loop.name, how, len(data))
        if how == "truncate":
            data = data[: rng.randrange(len(data))]
            self.world.after(0.0, lambda: peer.arrive("rst", None))
            return data
        at = rng.randrange(len(data))
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]

    # --- faults on paths ----------------------------------------------------------------

    def cut(self, src: str, dst: str) -> None:
        self.cut_paths.add((src, dst))

    def heal(self, src: str, dst: str) -> None:
        self.cut_paths.discard((src, dst))
        still: list[End] = []
        for end in self._held:
            if (end.local[0], end.remote[0]) in self.cut_paths:
                still.append(end)
                continue
            held, end.held = end.held, []
            for kind, payload in held:
                self._schedule(end, kind, payload)
        self._held = still

    def reset(self, a: str, b: str) -> int:
        """Reset every open connection between hosts *a* and *b* (both ends are told)."""
        count = 0
        for end in self.ends:
            if end.open and end.peer is not None and (end.local[0], end.remote[0]) == (a, b):
                count += 1
                end.reset()
        self.ends = [e for e in self.ends if e.open or e.held]
        return count

    def crash(self, loop: SimLoop) -> None:
        """*loop*'s node is gone: its listeners close, its sockets are closed by the kernel."""
        for key, server in list(self.listeners.items()):
            if server.loop is loop:
                del self.listeners[key]
        for end in self.ends:
            if end.loop is loop:
                end.crash()
        self.ends = [e for e in self.ends if e.open or e.held]


def _accept(end: End, factory: Callable[[], Any]) -> None:
    if end.loop.crashed or not end.open:
        return
    protocol = factory()
    end.protocol = protocol
    protocol.connection_made(end)
    end._continue()


def _refused(done: asyncio.Future[Any]) -> None:
    if not done.done():
        done.set_exception(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
