"""Cookies, handshakes, TLS and bad input against a node in another OS process."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import remote_funcs as rf
import trustme

from cloudy import (
    ConnectionRefusedByPeer,
    LocalNode,
    NodeId,
    call,
    closure,
)
from cloudy.testing import NodeProcess
from cloudy.wire import handshake as H
from cloudy.wire.framing import FrameDecoder, frame

COOKIE = "security-tests"


@pytest.fixture(scope="module")
def peer() -> Iterator[NodeProcess]:
    with NodeProcess("remote_funcs", cookie=COOKIE) as node:
        yield node


async def call_add(node_id: NodeId, **options: Any) -> int:
    """What a well-behaved client gets: 2 + 3 from the node."""
    options.setdefault("cookie", COOKIE)

    async def main() -> int:
        result: int = await call(node_id, closure(rf.add, 2, 3))
        return result

    async with LocalNode("127.0.0.1", 0, **options) as node:
        result: int = await asyncio.wait_for(node.run_process(main), 20)
        return result


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send *data* on a fresh connection; everything the node answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return received


def handshake_as_client(port: int, cookie: bytes) -> tuple[socket.socket, bytes]:
    """A raw client completing the handshake: the open socket and every byte it sent."""
    hs = H.Handshake(cookie=cookie, node=NodeId("127.0.0.1", 1), initiator=True)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    sent = hs.start()
    s.sendall(sent)
    decoder = FrameDecoder()
    while hs.state not in (H.HandshakeState.DONE, H.HandshakeState.FAILED):
        for body in decoder.feed(s.recv(65536)):
            out = hs.receive(body)
            s.sendall(out.data)
            sent += out.data
    assert hs.state is H.HandshakeState.DONE
    return s, sent


# --- cookies -----------------------------------------------------------------------------


async def test_a_wrong_cookie_is_refused_and_logged_on_both_sides(
    peer: NodeProcess, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConnectionRefusedByPeer) as info:
        await call_add(peer.node_id, cookie="not-the-cookie", connect_timeout=3.0)
    assert str(peer.node_id) in str(info.value)
    assert "cookie" in str(info.value)
    assert any("127.0.0.1:" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    # we may have refused the peer's proof before it has read ours: its line comes soon
    log = peer.wait_for_log("does not share our cookie")
    line = next(x for x in log.splitlines() if "does not share our cookie" in x)
    # (we dialled it on its local socket: it knows us by that until the handshake)
    assert line.startswith(("refusing a process on this machine", "refused by 127.0.0.1:")), line
    assert await call_add(peer.node_id) == 5  # the node goes on serving others


def test_a_replayed_handshake_is_refused(peer: NodeProcess) -> None:
    s, recorded = handshake_as_client(peer.port, COOKIE.encode())
    s.close()
    answer = exchange(peer.port, recorded)
    bodies = FrameDecoder().feed(answer)
    assert any(b"does not share our cookie" in body for body in bodies), answer
    assert asyncio.run(call_add(peer.node_id)) == 5


def test_a_peer_speaking_another_protocol_version_is_refused_with_both_versions(
    peer: NodeProcess,
) -> None:
    hello = H._Hello("cloudy", 99, NodeId("127.0.0.1", 1), os.urandom(32))
    answer = exchange(peer.port, frame(H._encode(hello)))
    assert f"we speak {H.PROTOCOL_VERSION}, the peer 99".encode() in answer
    assert f"protocol version mismatch: we speak {H.PROTOCOL_VERSION}, the peer 99" in peer.log()
    assert asyncio.run(call_add(peer.node_id)) == 5


async def test_dialling_a_node_of_another_protocol_version_raises_refused_by_peer() -> None:
    """The dialler, not only the listener, tells a version mismatch from a dead node."""

    async def speak_version_99(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            frame(H._encode(H._Hello("cloudy", 99, NodeId("127.0.0.1", 1), os.urandom(32))))
        )
        await writer.drain()
        await reader.read()  # until our dialler hangs up
        writer.close()

    server = await asyncio.start_server(speak_version_99, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        mismatch = f"we speak {H.PROTOCOL_VERSION}, the peer 99"
        with pytest.raises(ConnectionRefusedByPeer, match=mismatch):
            await call_add(NodeId("127.0.0.1", port))
    finally:
        server.close()
        await server.wait_closed()


# --- bad bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x00\x00\x00\x05hello",
        os.urandom(4096),
        b"\xff\xff\xff\xff",
        b"\x00\x00\x00\x10" + bytes(16),  # a Hello framed as protocol 2 framed it
    ],
    ids=["http", "not-a-hello", "random", "huge-length", "old-framing"],
)
def test_garbage_sent_to_the_listening_port_leaves_the_node_serving(
    peer: NodeProcess, garbage: bytes
) -> None:
    exchange(peer.port, garbage, timeout=3.0)
    assert asyncio.run(call_add(peer.node_id)) == 5


@pytest.mark.parametrize(
    ("after_handshake", "logged"),
    [
        (b"\x7f\xff\xff\xff", "protocol error from 127.0.0.1"),
        (frame(b"\xc1\xc1\xc1"), "undecodable frame"),
        (frame(b"\x81\xa1a\x01"), "undecodable frame"),  # {"a": 1}: msgpack, not items
        # a frame whose last byte changed on the way: its CRC-32 no longer matches
        (frame(b"\x91\x01")[:-1] + b"\x02", "a frame of 2 bytes was damaged in transit"),
    ],
    ids=["oversized-frame", "not-msgpack", "not-an-item", "damaged"],
)
def test_bad_frames_after_a_good_handshake_close_only_that_connection(
    peer: NodeProcess, after_handshake: bytes, logged: str
) -> None:
    async def main() -> None:
        async with LocalNode("127.0.0.1", 0, cookie=COOKIE) as node:

            async def before_and_after(bad: Callable[[], None]) -> tuple[int, int]:
                first: int = await call(peer.node_id, closure(rf.add, 1, 1))
                await asyncio.to_thread(bad)
                second: int = await call(peer.node_id, closure(rf.add, 2, 2))
                return first, second

            def bad() -> None:
                s, _ = handshake_as_client(peer.port, COOKIE.encode())
                with s:
                    s.sendall(after_handshake)
                    s.settimeout(5)
                    while s.recv(65536):
                        pass  # until the node closes it

            assert await node.run_process(before_and_after, bad) == (2, 4)

    before = peer.log().count(logged)
    asyncio.run(main())
    assert peer.log().count(logged) == before + 1


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_nodes_talk_over_tls_with_certificates_made_now(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    async with (
        LocalNode("127.0.0.1", 0, cookie=COOKIE, ssl=tls) as server,
        LocalNode("127.0.0.1", 0, cookie=COOKIE, ssl=tls) as client,
    ):

        async def main() -> int:
            result: int = await call(server.node_id, closure(rf.add, 20, 22))
            return result

        assert await asyncio.wait_for(client.run_process(main), 20) == 42


async def test_a_plain_client_cannot_talk_to_a_tls_node(
    tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE, ssl=tls) as server:
        with pytest.raises(Exception, match=str(server.node_id)):
            await call_add(server.node_id, connect_timeout=2.0)


# --- the cookie file -------------------------------------------------------------------------


def test_five_nodes_started_at_once_on_a_fresh_machine_share_one_cookie(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLOUDY_COOKIE"}
    env["HOME"] = str(tmp_path)
    script = (
        "import sys, time\n"
        "from cloudy.cookie import resolve_cookie\n"
        "time.sleep(max(0.0, float(sys.argv[1]) - time.time()))\n"
        "print(resolve_cookie().hex())\n"
    )
    start_at = str(time.time() + 1.0)  # all five reach the file at the same moment
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, start_at], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(5)
    ]
    try:
        cookies = {p.communicate(timeout=30)[0].strip() for p in procs}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert len(cookies) == 1 and "" not in cookies
    path = tmp_path / ".cloudy" / "cookie"
    assert path.stat().st_mode & 0o777 == 0o600
    assert cookies == {path.read_bytes().strip().hex()}
