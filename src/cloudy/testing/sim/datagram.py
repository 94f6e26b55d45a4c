"""Simulated UDP: multicast groups and datagram endpoints, for SimpleLocalnet's
discovery (``backend/discovery.py``, which asks the running loop for them through
``cloudy_multicast_join`` and ``cloudy_multicast_open`` when it has them).

Every simulated host is on one LAN segment: a datagram sent to a group reaches each
member, the sender's own host included (``IP_MULTICAST_LOOP``), after the path's
latency; one sent to an address reaches the endpoint bound there. A datagram on a
cut path, or to a killed node, is lost — UDP retransmits nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .base import WorldView

if TYPE_CHECKING:
    from .loop import SimLoop

__all__ = ["DatagramEnd", "Datagrams"]

FIRST_DATAGRAM_PORT = 30000


class DatagramEnd(asyncio.DatagramTransport):
    """A simulated UDP socket: bound to *addr*, a member of *group* if given."""

    def __init__(
        self,
        net: Datagrams,
        loop: SimLoop,
        addr: tuple[str, int],
        protocol: asyncio.DatagramProtocol,
        group: tuple[str, int] | None,
    ) -> None:
        super().__init__()
        self.net, self.loop, self.addr, self.protocol = net, loop, addr, protocol
        self.group = group
        self.open = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.addr if name == "sockname" else default

    def is_closing(self) -> bool:
        return not self.open

    def sendto(self, data: Any, addr: Any = None) -> None:
        if self.open:
            self.net.send(self, bytes(data), (str(addr[0]), int(addr[1])))

    def close(self) -> None:
        if self.open:
            self.open = False
            self.net.leave(self)
            self.loop.call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


class Datagrams:
    """Every datagram endpoint of a world, and the groups they joined."""

    def __init__(self, world: WorldView, cut: Callable[[str, str], bool]) -> None:
        self.world = world
        self.cut = cut  # whether the path from one host to another is cut
        self.groups: dict[tuple[str, int], list[DatagramEnd]] = {}
        self.bound: dict[tuple[str, int], DatagramEnd] = {}
        self._next: dict[str, int] = {}

    def join(
        self,
        loop: SimLoop,
        group: str,
        port: int,
        interface: str,
        factory: Callable[[], asyncio.DatagramProtocol],
    ) -> tuple[DatagramEnd, asyncio.DatagramProtocol]:
        protocol = factory()
        end = DatagramEnd(self, loop, (interface, port), protocol, (group, port))
        self.groups.setdefault((group, port), []).append(end)
        protocol.connection_made(end)
        return end, protocol

    def open(
        self, loop: SimLoop, interface: str, factory: Callable[[], asyncio.DatagramProtocol]
    ) -> tuple[DatagramEnd, asyncio.DatagramProtocol]:
        port = self._next.get(interface, FIRST_DATAGRAM_PORT)
        while (interface, port) in self.bound:
            port += 1
        self._next[interface] = port + 1
        protocol = factory()
        end = DatagramEnd(self, loop, (interface, port), protocol, None)
        self.bound[end.addr] = end
        protocol.connection_made(end)
        return end, protocol

    def leave(self, end: DatagramEnd) -> None:
        if end.group is not None:
            members = self.groups.get(end.group, [])
            if end in members:
                members.remove(end)
        self.bound.pop(end.addr, None)

    def send(self, src: DatagramEnd, data: bytes, addr: tuple[str, int]) -> None:
        members = self.groups.get(addr)
        targets = list(members) if members is not None else [self.bound.get(addr)]
        for dst in targets:
            if dst is None:
                continue
            if self.cut(src.addr[0], dst.addr[0]):
                self.world.record("udp-lost", src.addr, dst.addr, len(data))
                continue
            delay = self.world.latency(src.addr[0], dst.addr[0])
            self.world.after(delay, self._deliver, dst, data, src.addr)

    def _deliver(self, dst: DatagramEnd, data: bytes, frm: tuple[str, int]) -> None:
        if dst.open and not dst.loop.crashed:
            self.world.record("udp", dst.loop.name, frm, len(data))
            dst.loop.call_soon(dst.protocol.datagram_received, data, frm)

    def crash(self, loop: SimLoop) -> None:
        for end in [e for es in self.groups.values() for e in es] + list(self.bound.values()):
            if end.loop is loop:
                end.open = False
                self.leave(end)
