"""Replayed and flooding discovery requests: a node answers a handful, and discovery goes on.

First the answering rules without sockets (`Answering`, clocks given), then a real node on
127.0.0.1 with a private discovery port and cookie, hit with a captured request replayed
tens of thousands of times and with a flood of distinct valid requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudy import NodeId
from cloudy.backend import discovery as T
from cloudy.backend import simplelocalnet as sl
from cloudy.backend.discovery import DEFAULT_GROUP, Answering
from cloudy.testing import free_port
from cloudy.wire import discovery as D

NOW = 1.7e9  # a wall clock
REPLAYS = 50_000


def verdict(answering: Answering, who: D.Who, wall: float, mono: float) -> str:
    """ "answer", or the kind of drop."""
    try:
        answering.admit(who, wall, mono)
    except D.DatagramError as e:
        return e.kind
    return "answer"


def nonce() -> bytes:
    return os.urandom(D.NONCE_SIZE)


# --- the rules, sans-IO ---------------------------------------------------------------------


def test_one_copy_heard_again_and_again_is_answered_once() -> None:
    answering, who = Answering(), D.Who(nonce(), NOW, 0)
    kinds = [verdict(answering, who, NOW + i / 1000, i / 1000) for i in range(5000)]
    assert kinds.count("answer") == 1
    assert kinds[0] == "answer"
    assert set(kinds[1:]) == {"replayed"}


@given(st.lists(st.floats(0, 0.9 * (T.RESEND_EVERY - T.MIN_ANSWER_GAP)), min_size=1, max_size=40))
def test_every_resend_of_a_live_request_is_answered(lateness: list[float]) -> None:
    # the asker sends copy k at k * RESEND_EVERY (or later: it sleeps at least that long);
    # each arrives up to (nearly) RESEND_EVERY - MIN_ANSWER_GAP late, and each is answered
    answering, n = Answering(), nonce()
    for seq, late in enumerate(lateness):
        at = seq * T.RESEND_EVERY + late
        assert verdict(answering, D.Who(n, NOW + at, seq), NOW + at, at) == "answer"


@given(st.lists(st.tuples(st.integers(0, 30), st.floats(0, 10)), min_size=1, max_size=200))
def test_any_replay_of_captured_copies_gets_one_answer_per_copy_and_per_gap(
    heard: list[tuple[int, float]],
) -> None:
    answering, n = Answering(), nonce()
    answers: list[tuple[int, float]] = []
    for seq, at in sorted(heard, key=lambda h: h[1]):
        if verdict(answering, D.Who(n, NOW, seq), NOW + at, at) == "answer":
            answers.append((seq, at))
    seqs = [seq for seq, _ in answers]
    assert seqs == sorted(set(seqs))  # each copy at most once, never an older one
    times = [at for _, at in answers]
    assert all(b - a >= T.MIN_ANSWER_GAP for a, b in itertools.pairwise(times))


def test_stale_and_future_requests_are_not_answered() -> None:
    answering = Answering()
    old = D.Who(nonce(), NOW - D.MAX_SKEW - 1, 0)
    ahead = D.Who(nonce(), NOW + D.MAX_SKEW + 1, 0)
    assert verdict(answering, old, NOW, 0.0) == "stale"
    assert verdict(answering, ahead, NOW, 0.0) == "stale"
    skewed = D.Who(nonce(), NOW + D.MAX_SKEW - 1, 0)  # a clock 29 s ahead is tolerated
    assert verdict(answering, skewed, NOW, 0.0) == "answer"


def test_answers_are_limited_overall_and_the_bucket_refills() -> None:
    answering = Answering()
    kinds = [verdict(answering, D.Who(nonce(), NOW, 0), NOW, 0.0) for _ in range(1000)]
    assert kinds.count("answer") == T.ANSWER_BURST
    assert kinds.count("rate-limited") == 1000 - T.ANSWER_BURST
    later = [verdict(answering, D.Who(nonce(), NOW + 0.5, 0), NOW + 0.5, 0.5) for _ in range(500)]
    assert later.count("answer") == int(T.ANSWER_RATE * 0.5)


def test_answered_nonces_are_forgotten_only_once_their_copies_are_stale() -> None:
    answering, n = Answering(), nonce()
    first = D.Who(n, NOW, 0)
    assert verdict(answering, first, NOW, 0.0) == "answer"
    # remembered for as long as the copy can be fresh, whatever the skew...
    at = 2 * D.MAX_SKEW
    assert verdict(answering, D.Who(n, NOW + D.MAX_SKEW, 0), NOW + at, at) == "replayed"
    # ...then forgotten, when any copy of it that old is stale anyway
    later = answering.remember_for
    assert verdict(answering, D.Who(nonce(), NOW + later, 0), NOW + later, later) == "answer"
    assert len(answering) == 1
    assert verdict(answering, first, NOW + later, later) == "stale"


# --- a real node ----------------------------------------------------------------------------


def unique_cookie(name: str) -> str:
    return f"{name}-{os.getpid()}-{time.monotonic_ns()}"


@contextlib.asynccontextmanager
async def a_node(port: int, cookie: str) -> AsyncIterator[sl.Backend]:
    backend = sl.initialize_backend("127.0.0.1", 0, multicast_port=port, cookie=cookie)
    try:
        await backend.new_local_node()
        yield backend
    finally:
        await backend.close()


@contextlib.contextmanager
def replayer_socket() -> Iterator[socket.socket]:
    """A socket that multicasts on loopback only (TTL 0), and hears the answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        yield s


def replay(sock: socket.socket, port: int, datagram: bytes, times: int) -> None:
    for _ in range(times):
        with contextlib.suppress(BlockingIOError):
            sock.sendto(datagram, (DEFAULT_GROUP, port))


def answers_in(sock: socket.socket, key: bytes) -> list[D.Here]:
    """The answers waiting on *sock*."""
    sock.setblocking(False)
    found: list[D.Here] = []
    while True:
        try:
            data = sock.recv(D.MAX_DATAGRAM + 1)
        except BlockingIOError:
            return found
        msg = D.decode(key, data)
        assert isinstance(msg, D.Here)
        found.append(msg)


async def test_a_captured_request_replayed_50000_times_gets_a_handful_of_answers() -> None:
    port, cookie = free_port(socket.SOCK_DGRAM), unique_cookie("replay")
    key = D.discovery_key(cookie.encode())
    captured = D.Who(nonce(), time.time(), 0)
    async with a_node(port, cookie) as node:
        me = node.node.node_id
        with replayer_socket() as sock:
            # as fast as a thread can, while the node's loop answers what it hears
            await asyncio.to_thread(replay, sock, port, D.encode(key, captured), REPLAYS)
            await asyncio.sleep(0.3)
            answers = answers_in(sock, key)
        assert 1 <= len(answers) <= 5, len(answers)
        assert {(a.nonce, NodeId(a.host, a.port)) for a in answers} == {(captured.nonce, me)}
        dropped = node.dropped_datagrams
        assert dropped.get("replayed", 0) > 0
        assert "rate-limited" not in dropped  # replays never reach the rate limit
        assert me in await node.find_peers(0.5)  # and discovery goes on


async def test_stale_and_future_requests_get_no_answer() -> None:
    port, cookie = free_port(socket.SOCK_DGRAM), unique_cookie("stale")
    key = D.discovery_key(cookie.encode())
    now = time.time()
    old = D.encode(key, D.Who(nonce(), now - 2 * D.MAX_SKEW, 0))
    ahead = D.encode(key, D.Who(nonce(), now + 2 * D.MAX_SKEW, 0))
    async with a_node(port, cookie) as node:
        with replayer_socket() as sock:
            replay(sock, port, old, 3)
            replay(sock, port, ahead, 3)
            await asyncio.sleep(0.2)
            assert answers_in(sock, key) == []
        assert node.dropped_datagrams.get("stale", 0) == 6
        assert node.node.node_id in await node.find_peers(0.5)


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.received.append(data)


async def flood(port: int, requests: list[bytes]) -> tuple[list[bytes], float]:
    """Send *requests* to the group on *port* in batches of 50 (so the node hears them
    all); the answers that came back within 0.3 s after, and how long sending took."""
    with replayer_socket() as sock:
        sock.setblocking(False)
        collector = Collector()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: collector, sock=sock)
        try:
            started = time.monotonic()
            for at in range(0, len(requests), 50):
                for request in requests[at : at + 50]:
                    transport.sendto(request, (DEFAULT_GROUP, port))
                await asyncio.sleep(0.002)
            took = time.monotonic() - started
            await asyncio.sleep(0.3)
        finally:
            transport.close()
    return collector.received, took


async def test_a_flood_of_distinct_valid_requests_gets_rate_limited_answers() -> None:
    port, cookie = free_port(socket.SOCK_DGRAM), unique_cookie("flood")
    key = D.discovery_key(cookie.encode())
    count = 2000
    requests = [D.encode(key, D.Who(nonce(), time.time(), 0)) for _ in range(count)]
    async with a_node(port, cookie) as node:
        received, took = await flood(port, requests)
        answers = len(received)
        allowed = T.ANSWER_BURST + T.ANSWER_RATE * (took + 0.3)
        assert T.ANSWER_BURST <= answers <= allowed, (answers, took)
        assert node.dropped_datagrams.get("rate-limited", 0) > 0
        await asyncio.sleep(0.1)  # a few tokens back: a genuine request is answered again
        assert node.node.node_id in await node.find_peers(0.5)


async def test_requests_with_another_cookie_get_few_answers_that_name_no_address() -> None:
    port, cookie = free_port(socket.SOCK_DGRAM), unique_cookie("stranger")
    theirs = D.discovery_key(b"another cookie")
    count = 500
    requests = [D.encode(theirs, D.Who(nonce(), time.time(), 0)) for _ in range(count)]
    async with a_node(port, cookie) as node:
        received, took = await flood(port, requests)
        # each answer: a Stranger, no address in it, and unsigned: nothing made with the
        # node's key, which would let the asker test guesses of its cookie
        answers = [D.peek(data) for data in received]
        assert all(isinstance(a, D.Stranger) for a in answers), answers
        assert len({a.tag for a in answers if isinstance(a, D.Stranger)}) == 1  # one node
        ours = D.discovery_key(cookie.encode())
        for data in received:
            assert data.endswith(bytes(32)) and len(data) <= len(requests[0])
            for key in (theirs, ours):
                with pytest.raises(D.DatagramError, match="cookie"):
                    D.decode(key, data)
        allowed = T.STRANGER_RATE * (1 + took + 0.3)
        assert 1 <= len(answers) <= allowed, (len(answers), took)
        # their budget is their own: a genuine request is answered at once
        assert node.node.node_id in await node.find_peers(0.5)


async def test_a_stranger_request_smaller_than_the_answer_gets_none() -> None:
    """No more bytes out than came in: a request shrunk below a real one (its time an
    integer) is not answered, so discovery cannot amplify a spoofed flood."""
    port, cookie = free_port(socket.SOCK_DGRAM), unique_cookie("small")
    theirs = D.discovery_key(b"another cookie")
    small = D.encode(theirs, D.Who(nonce(), int(time.time()), 0))
    normal = D.encode(theirs, D.Who(nonce(), time.time(), 0))
    async with a_node(port, cookie):
        received, _ = await flood(port, [small])
        assert received == []
        received, _ = await flood(port, [normal])
        assert len(received) == 1 and len(received[0]) <= len(normal)


async def test_a_node_that_starts_during_the_window_is_found_by_a_resend() -> None:
    port, cookie = free_port(socket.SOCK_DGRAM), unique_cookie("late")
    async with a_node(port, cookie) as asker:
        asking = asyncio.create_task(asker.find_peers(1.5))
        await asyncio.sleep(0.6)  # copies 0-2 have gone unheard by the late node
        async with a_node(port, cookie) as late:
            peers = await asking
            assert set(peers) == {asker.node.node_id, late.node.node_id}
