"""The discovery daemon: UDP multicast "who's there?" and unicast "here I am".

Every node of a SimpleLocalnet backend listens on the multicast group and answers
each signed `Who` it hears with a `Here` naming its TCP address, sent back to the
requester's own address. A requester sends its `Who` from a socket of its own and
collects the answers carrying its nonce.

The multicast interface is the node's own address: a node on 127.0.0.1 sends and
listens on loopback only, with TTL 0 so nothing leaves the host; a node on a LAN
address uses that interface with TTL 1 (the local link, as Cloud Haskell).
Datagrams that are not ours (garbage, another cookie, another version, oversized)
are counted in `dropped` and logged at debug level; they never stop the daemon.

A node does not answer every copy of a request it hears (`Answering`): a stale one
is dropped ("stale"), each copy of a request is answered once and a request at most
once every `MIN_ANSWER_GAP` s ("replayed"), and all answers together are limited to
`ANSWER_RATE` a second with bursts of `ANSWER_BURST` ("rate-limited"). So a replayed
datagram, however often, gets one answer, and no flood of requests makes a flood of
answers; the asker numbers its resends, so each of them is still answered.

A request signed with another cookie gets a `Stranger` answer (no address: a random tag
of this daemon; unsigned, so it tells nothing of our cookie), limited apart from the
others to `STRANGER_RATE` a second, so that an asker can count the nodes with a
different cookie (``strangers`` of `Discovery.ask`: a count, not a proof — anyone on
the link could forge such answers); it is sent only if no larger than the request.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import itertools
import logging
import socket
import sys
from collections.abc import Callable
from typing import cast

from .. import clock
from ..identity import NodeId
from ..wire import discovery as D

__all__ = ["DEFAULT_GROUP", "DEFAULT_PORT", "Answering", "Discovery", "interface_address"]

log = logging.getLogger("cloudy.discovery")

DEFAULT_GROUP = "224.0.0.99"
DEFAULT_PORT = 9999
# A request is sent again this often while its answers are awaited.
RESEND_EVERY = 0.25
# One request (nonce) is answered at most this often: below RESEND_EVERY, so every resend
# of a live request is answered, yet a burst of replayed copies gets a single answer.
MIN_ANSWER_GAP = 0.2
# All answers together: this many a second, after a burst of at most ANSWER_BURST.
ANSWER_RATE = 200.0
ANSWER_BURST = 200
# Answers to requests signed with another cookie (`Stranger`): this many a second, at most.
STRANGER_RATE = 20.0
# Linux's <linux/in.h> value, for Pythons whose socket module lacks the name.
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


def interface_address(host: str) -> str:
    """The IPv4 address *host* names: the interface discovery uses for it.

    Raises `OSError` with a clear message if *host* does not resolve to one, or is a
    wildcard (a node must be reachable at the address it names).
    """
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise OSError(
            f"cannot resolve {host!r} to an IPv4 address ({e.strerror}): name this machine "
            "by an address (127.0.0.1) or by a name in /etc/hosts or DNS"
        ) from None
    address = str(infos[0][4][0])
    if ipaddress.IPv4Address(address).is_unspecified:
        raise OSError(f"{host!r} is a wildcard address: name this machine's own address")
    return address


class Answering:
    """Which valid requests a node answers: sans-IO, the caller gives the clocks.

    `admit` raises `DatagramError` naming why a request gets no answer ("stale",
    "replayed", "rate-limited"), or records that it is answered now.
    """

    def __init__(
        self,
        *,
        rate: float = ANSWER_RATE,
        burst: int = ANSWER_BURST,
        gap: float = MIN_ANSWER_GAP,
        skew: float = D.MAX_SKEW,
    ) -> None:
        self.rate, self.burst, self.gap, self.skew = rate, burst, gap, skew
        # A copy of a request is fresh for *skew* s either side of its send time, so for
        # at most 2 * skew s after we answered one (whatever the clocks' skew): its nonce
        # is remembered that long. Each remembered nonce took an answer, so the cap is never
        # reached before they expire (it bounds memory should the clock stand still).
        self.remember_for = 2 * skew + 1.0
        self.remember_at_most = burst + int(rate * self.remember_for)
        # nonce -> (the highest copy answered, when: monotonic), least recently answered first
        self._answered: collections.OrderedDict[bytes, tuple[int, float]] = (
            collections.OrderedDict()
        )
        self._tokens = float(burst)
        self._filled_at: float | None = None

    def __len__(self) -> int:
        return len(self._answered)

    def admit(self, who: D.Who, wall: float, mono: float) -> None:
        """Answer *who* now (by *wall* = clock.wall(), *mono* = clock.now()), or raise."""
        D.check_fresh(who, wall, self.skew)
        answered = self._answered
        while answered:  # forget what can no longer be replayed fresh
            oldest = next(iter(answered.values()))
            if mono - oldest[1] < self.remember_for:
                break
            answered.popitem(last=False)
        last = answered.get(who.nonce)
        if last is not None:
            seq, at = last
            if who.seq <= seq:
                raise D.DatagramError("replayed", f"copy {who.seq}, answered up to copy {seq}")
            if mono - at < self.gap:
                raise D.DatagramError("replayed", f"request answered {mono - at:.3f} s ago")
        if self._filled_at is not None:
            elapsed = max(0.0, mono - self._filled_at)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._filled_at = mono
        if self._tokens < 1.0:
            raise D.DatagramError("rate-limited", f"over {self.rate:g} answers a second")
        self._tokens -= 1.0
        answered[who.nonce] = (who.seq, mono)
        answered.move_to_end(who.nonce)
        while len(answered) > self.remember_at_most:  # only if the clock stood still
            answered.popitem(last=False)


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, daemon: Discovery) -> None:
        self.daemon = daemon
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's datagram transport is not an asyncio.DatagramTransport subclass
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        daemon = self.daemon
        msg = daemon.check(data, addr)
        node = daemon.answer()
        if self.transport is None or node is None:
            return
        if isinstance(msg, D.Who) and daemon.admit(msg, addr):
            reply = D.encode(daemon.key, D.Here(msg.nonce, node.host, node.port))
            self.transport.sendto(reply, addr)
        elif msg is None and (who := daemon.stranger(data, addr)) is not None:
            answer = D.encode_unsigned(D.Stranger(who.nonce, daemon.tag))
            if len(answer) <= len(data):  # never more bytes out than came in
                self.transport.sendto(answer, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("discovery socket error: %s", exc)


class _Asker(asyncio.DatagramProtocol):
    def __init__(
        self,
        daemon: Discovery,
        nonce: bytes,
        found: Callable[[NodeId], None],
        strangers: set[bytes] | None,
    ) -> None:
        self.daemon = daemon
        self.nonce = nonce
        self.found = found
        self.seen: set[NodeId] = set()
        self.strangers = strangers

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        msg = self.daemon.check(data, addr)
        if isinstance(msg, D.Here) and msg.nonce == self.nonce:
            node = NodeId(msg.host, msg.port)
            if node not in self.seen:
                self.seen.add(node)
                self.found(node)
        elif msg is None and self.strangers is not None and len(self.strangers) < 1024:
            # unauthenticated: counted, never trusted (its tag only tells answers apart)
            other = D.peek(data)
            if isinstance(other, D.Stranger) and other.nonce == self.nonce:
                self.strangers.add(other.tag)

    def error_received(self, exc: Exception) -> None:
        log.debug("discovery socket error: %s", exc)


class Discovery:
    """Answers discovery requests for a node, and asks who is there.

    *answer* gives the node to announce (None: stay silent). *interface* is the
    IPv4 address of the interface to use (see `interface_address`).
    """

    def __init__(
        self,
        *,
        cookie: bytes,
        interface: str,
        answer: Callable[[], NodeId | None],
        group: str = DEFAULT_GROUP,
        port: int = DEFAULT_PORT,
    ) -> None:
        if not ipaddress.IPv4Address(group).is_multicast:
            raise ValueError(f"{group} is not an IPv4 multicast group")
        if not 0 < port < 65536:
            raise ValueError(f"discovery port {port} is out of range 1-65535")
        self.key = D.discovery_key(cookie)
        self.interface = interface
        self.group = group
        self.port = port
        self.answer = answer
        self.ttl = 0 if ipaddress.IPv4Address(interface).is_loopback else 1
        self.dropped: collections.Counter[str] = collections.Counter()
        self.answering = Answering()
        # answers to requests signed with another cookie: a tag, and a budget, of their own
        self.tag = clock.random_bytes(D.TAG_SIZE)
        self.answering_strangers = Answering(rate=STRANGER_RATE, burst=int(STRANGER_RATE))
        self._listener: asyncio.DatagramTransport | None = None

    def __repr__(self) -> str:
        return f"<Discovery {self.group}:{self.port} via {self.interface}>"

    def check(self, data: bytes, addr: tuple[str | object, ...]) -> D.Message | None:
        """The message in *data*, or None (counted and logged) if it is not ours."""
        try:
            return D.decode(self.key, data)
        except D.DatagramError as e:
            self.dropped[e.kind] += 1
            log.debug("discovery: ignored a datagram from %s: %s", addr[0], e)
            return None

    def stranger(self, data: bytes, addr: tuple[str | object, ...]) -> D.Who | None:
        """The request in *data*, a datagram that failed authentication, if it is one
        from a node with another cookie that is to get a `Stranger` answer now."""
        who = D.peek(data)  # (had it been signed with our key, `check` would have read it)
        if not isinstance(who, D.Who):
            return None
        try:
            self.answering_strangers.admit(who, clock.wall(), clock.now())
        except D.DatagramError as e:
            log.debug("discovery: no answer to a stranger's request from %s: %s", addr[0], e)
            return None
        return who

    def admit(self, who: D.Who, addr: tuple[str | object, ...]) -> bool:
        """Whether to answer *who* now; if not, the reason is counted and logged."""
        try:
            self.answering.admit(who, clock.wall(), clock.now())
        except D.DatagramError as e:
            self.dropped[e.kind] += 1
            log.debug("discovery: no answer to a request from %s: %s", addr[0], e)
            return False
        return True

    async def start(self) -> None:
        """Join the group and answer requests. Raises `OSError` if multicast is unusable.

        A loop that simulates the network (``cloudy.testing.sim``) gives the socket
        (``cloudy_multicast_join``); any other, the operating system."""
        loop = asyncio.get_running_loop()
        simulated = getattr(loop, "cloudy_multicast_join", None)
        if simulated is not None:
            self._listener, _ = await simulated(
                self.group, self.port, self.interface, lambda: _Listener(self)
            )
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # bound to the group: only datagrams sent to the group arrive here
            sock.bind((self.group, self.port))
            membership = socket.inet_aton(self.group) + socket.inet_aton(self.interface)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            if sys.platform == "linux":
                # Linux otherwise hands us the group's datagrams from every interface any
                # socket joined it on: a node on 127.0.0.1 would answer requests from the
                # LAN (naming an address nobody there can reach), and a node on a LAN
                # address those sent over loopback. Only our own interface counts.
                sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
            self._configure(sock)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise OSError(
                e.errno,
                f"cannot listen for discovery on {self.group}:{self.port} via "
                f"{self.interface}: {e.strerror}",
            ) from None
        transport, _ = await loop.create_datagram_endpoint(lambda: _Listener(self), sock=sock)
        self._listener = transport

    def _asking_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.interface, 0))
            self._configure(sock)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _configure(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(self.interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, self.ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)

    async def ask(
        self,
        seconds: float,
        found: Callable[[NodeId], None],
        strangers: set[bytes] | None = None,
    ) -> set[NodeId]:
        """Multicast a request, call *found* for each node answering it, for *seconds*.

        Returns every node that answered. *strangers*, if given, gets a tag for each node
        with another cookie that answered (`Stranger`; their number is all they tell).
        Raises `OSError` if the request cannot be sent.
        """
        nonce = clock.random_bytes(D.NONCE_SIZE)
        loop = asyncio.get_running_loop()
        asker = _Asker(self, nonce, found, strangers)
        simulated = getattr(loop, "cloudy_multicast_open", None)
        if simulated is not None:  # (see `start`)
            transport, _ = await simulated(self.interface, lambda: asker)
        else:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: asker, sock=self._asking_socket()
            )
        deadline = loop.time() + seconds
        try:
            # again and again: a lost datagram, or a node that starts meanwhile, still counts;
            # each copy numbered and timed, so that nodes answer each copy once
            for seq in itertools.count():
                if (left := deadline - loop.time()) <= 0:
                    break
                request = D.encode(self.key, D.Who(nonce, clock.wall(), seq))
                transport.sendto(request, (self.group, self.port))
                await asyncio.sleep(min(left, RESEND_EVERY))
        finally:
            transport.close()
        return asker.seen

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(Exception):
                self._listener.close()
            self._listener = None
