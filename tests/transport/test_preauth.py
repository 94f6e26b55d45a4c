"""Peers that never authenticate cannot exhaust a node: its memory (frames declared huge
before the handshake), its file descriptors (idle connections by the thousand) or its log."""

from __future__ import annotations

import asyncio
import contextlib
import re
import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import remote_funcs as rf

from cloudy import LocalNode, NodeId, call, closure
from cloudy.errors import ProtocolError
from cloudy.testing import NodeProcess
from cloudy.transport.admission import (
    DEFAULT_MAX_PENDING_HANDSHAKES,
    Admission,
    Refusal,
    pending_cap,
)
from cloudy.wire.framing import DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME, FrameDecoder, frame

COOKIE = "preauth-tests"
MiB = 1024 * 1024
SUMMARY = "unauthenticated connections in the last"


async def call_add(node_id: NodeId) -> int:
    """What a well-behaved client gets: 2 + 3 from the node."""

    async def main() -> int:
        result: int = await call(node_id, closure(rf.add, 2, 3))
        return result

    async with LocalNode("127.0.0.1", 0, cookie=COOKIE) as node:
        result: int = await asyncio.wait_for(node.run_process(main), 10)
        return result


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field (VmRSS, VmHWM) of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def closed_by_peer(s: socket.socket, timeout: float = 5.0) -> bool:
    """True once the other end has closed *s* (end of file or reset) within *timeout*."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


def log_lines(node: NodeProcess) -> list[str]:
    return [x for x in node.log().splitlines() if "cloudy.testing: ready" not in x]


# --- memory: a frame declared huge before the handshake ----------------------------------


def test_frames_declared_huge_before_the_handshake_are_refused_before_being_buffered() -> None:
    with NodeProcess("remote_funcs", cookie=COOKIE) as node:
        peak_before = status_kib(node.pid, "VmHWM")
        socks = [socket.create_connection(("127.0.0.1", node.port), timeout=5) for _ in range(16)]
        try:
            for s in socks:  # 16 frames of 60 MiB declared at once...
                s.sendall((60 * MiB).to_bytes(4, "big"))
            chunk = bytes(MiB)
            for s in socks:  # ...and (almost) sent: what the node kept would stay
                with contextlib.suppress(OSError):
                    for _ in range(59):
                        s.sendall(chunk)
            assert all(closed_by_peer(s) for s in socks), "a connection was left open"
            peak_after = status_kib(node.pid, "VmHWM")
            rss = status_kib(node.pid, "VmRSS")
        finally:
            for s in socks:
                s.close()
        assert peak_after < peak_before + 50 * 1024, (peak_before, peak_after, rss)
        assert asyncio.run(call_add(node.node_id)) == 5
        node.wait_for_log("a frame over the handshake limit")
        assert len(log_lines(node)) <= 2, node.log()


# --- file descriptors and the log: idle connections by the thousand ------------------------

FLOOD = 1100


@pytest.fixture
def many_files() -> Iterator[None]:
    """This process may open FLOOD sockets and more (restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = FLOOD + 300
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard limit on open files is {hard}: {FLOOD} connections need {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_idle_unauthenticated_connections_neither_lock_peers_out_nor_flood_the_log(
    many_files: None,
) -> None:
    with NodeProcess("remote_funcs", cookie=COOKIE, nofile=1024) as node:
        socks: list[socket.socket] = []
        try:
            started = time.monotonic()
            for i in range(FLOOD):
                if i % 100 == 99:
                    time.sleep(0.05)  # a breath for the node: a full accept queue costs 1 s
                socks.append(socket.create_connection(("127.0.0.1", node.port), timeout=5))
            assert asyncio.run(call_add(node.node_id)) == 5  # while they are all open
            log = node.wait_for_log(SUMMARY, timeout=15)
            assert time.monotonic() - started < 14
        finally:
            for s in socks:
                s.close()
        lines = log_lines(node)
        assert len(lines) < 20, log
        summary = next(x for x in lines if SUMMARY in x)
        cap = min(DEFAULT_MAX_PENDING_HANDSHAKES, 1024 // 4)  # (the node's open files: 1024)
        assert (
            "(from 127.0.0.1 x" in summary and f"dropped over the cap of {cap} pending" in summary
        )
        assert "out of system resource" not in log and "Traceback" not in log


async def test_local_node_passes_max_pending_handshakes_to_its_transport() -> None:
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE, max_pending_handshakes=2) as node:

        def three_idle_connections() -> tuple[bool, bool]:
            address = ("127.0.0.1", node.node_id.port)
            socks = [socket.create_connection(address, timeout=5) for _ in range(3)]
            try:  # the oldest is dropped for the third; the third waits for its handshake
                return closed_by_peer(socks[0], 3.0), closed_by_peer(socks[2], 0.3)
            finally:
                for s in socks:
                    s.close()

        assert await asyncio.to_thread(three_idle_connections) == (True, False)


# --- without sockets -------------------------------------------------------------------------


def test_the_frame_decoder_takes_only_handshake_frames_until_its_limit_is_raised() -> None:
    hello, big = b"h" * 200, bytes(MiB)
    decoder = FrameDecoder(HANDSHAKE_MAX_FRAME)
    with pytest.raises(ProtocolError, match="exceeds the limit of 4096"):
        decoder.feed((HANDSHAKE_MAX_FRAME + 1).to_bytes(4, "big") + b"x" * 100)

    # the last handshake frame and the first big one in one read: the big one waits...
    decoder = FrameDecoder(HANDSHAKE_MAX_FRAME)
    data = frame(hello) + frame(big)
    assert decoder.feed(data[: 4 + len(hello) + 1000]) == [hello]
    decoder.max_frame = DEFAULT_MAX_FRAME  # ...for the connection to be UP
    assert decoder.feed(data[4 + len(hello) + 1000 :]) == [big]

    # ...or to be refused if it is not
    decoder = FrameDecoder(HANDSHAKE_MAX_FRAME)
    assert decoder.feed(frame(hello) + frame(big)[:4]) == [hello]
    with pytest.raises(ProtocolError):
        decoder.feed(b"")


def test_the_cap_stays_under_a_quarter_of_the_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pending_cap(64) == min(64, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4)
    monkeypatch.setattr(resource, "getrlimit", lambda _: (100, 1000))
    assert (pending_cap(64), pending_cap(10), Admission(64, timeout=1).cap) == (25, 10, 25)


class FakeConnection:
    def __init__(self, host: str) -> None:
        self.peer_host = host
        self.aborted: str | None = None

    def abort(self, reason: str) -> None:
        self.aborted = reason


async def test_admission_drops_the_oldest_over_the_cap_and_sums_refusals_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    admission = Admission(3, timeout=0.1, every=1.0)
    conns = [FakeConnection(f"10.0.0.{i % 4}") for i in range(10)]
    for conn in conns:
        admission.admit(conn)
    assert admission.pending == 3
    assert [c.aborted for c in conns[:7]] == ["too many connections in handshake"] * 7
    admission.settle(conns[7])  # authenticated in time
    await asyncio.sleep(0.3)
    assert [c.aborted for c in conns[7:]] == [None, "handshake timeout", "handshake timeout"]
    first = [r.getMessage() for r in caplog.records]
    assert first == [
        "refused an unauthenticated connection from 10.0.0.0 (dropped over the cap of 3 "
        "pending); further refusals are summarised every 1 s"
    ]
    for _ in range(7):
        admission.auth_failure(
            "10.0.0.9", "refusing 10.0.0.9:1 (it called us): authentication failed"
        )
    admission.refuse("10.0.0.9", Refusal.OVERSIZED)
    await asyncio.sleep(1.2)  # the period ends 1 s after the first refusal
    lines = [r.getMessage() for r in caplog.records][1:]
    assert lines[:5] == ["refusing 10.0.0.9:1 (it called us): authentication failed"] * 5
    # the period is 1 s; a loaded loop may end it a little later ("1.01 s")
    assert [re.sub(r"in the last 1(\.\d+)? s", "in the last 1 s", x) for x in lines[5:]] == [
        "refused 11 unauthenticated connections in the last 1 s (from 10.0.0.1 x3, "
        "10.0.0.9 x3, 10.0.0.2 x2, 2 more): 6 dropped over the cap of 3 pending, "
        "2 handshake timeouts, 2 wrong cookies or versions, 1 frames over the handshake limit"
    ]
    admission.close()
