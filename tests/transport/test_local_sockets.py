"""Peers on one machine are linked by a Unix socket (``cloudy/transport/unix.py``), with
the peer in its own OS process: which link each side uses (`PeerStats.link`), TCP when
either side is told so, and a node whose local name another process holds first."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import remote_funcs as rf

from cloudy import LocalNode, NodeId, NodeStats, call, closure, get_node_stats, get_self_pid
from cloudy.testing import NodeProcess, free_port

COOKIE = "test-local-sockets"
TCP_ONLY = {**os.environ, "CLOUDY_LOCAL_SOCKETS": "0"}


def links(stats: NodeStats, node: NodeId) -> list[str]:
    """The links of the live connections of the node that made *stats* to *node*."""
    return sorted(p.link for p in stats.peers if p.node == node and p.state == "up")


async def talk(peer: NodeId, **options: Any) -> tuple[int, list[str], list[str]]:
    """From a node here: 2 + 3 computed by *peer*, and the links each side sees."""

    async def main() -> tuple[int, list[str], list[str]]:
        me = get_self_pid().node
        total: int = await call(peer, closure(rf.add, 2, 3))
        here = links(await get_node_stats(me), peer)
        there = links(await get_node_stats(peer), me)
        return total, here, there

    async with LocalNode("127.0.0.1", 0, cookie=COOKIE, **options) as node:
        return await asyncio.wait_for(node.run_process(main), 20)


@pytest.fixture
def peer() -> Iterator[NodeProcess]:
    with NodeProcess("remote_funcs", cookie=COOKIE) as node:
        yield node


async def test_a_peer_on_this_machine_is_linked_by_a_unix_socket(peer: NodeProcess) -> None:
    # one connection, which the peer answers on too: a Unix socket, as both ends see it
    assert await talk(peer.node_id) == (5, ["unix"], ["unix"])


async def test_told_to_use_tcp_a_node_dials_tcp_and_is_dialled_over_tcp() -> None:
    with NodeProcess("remote_funcs", cookie=COOKIE, env=TCP_ONLY) as tcp_peer:
        # it has no local name: we reach it over TCP
        assert await talk(tcp_peer.node_id) == (5, ["tcp"], ["tcp"])


async def test_a_node_told_to_use_tcp_dials_a_peer_that_has_a_name_over_tcp(
    peer: NodeProcess,
) -> None:
    # we dial over TCP though the peer has a local name
    assert await talk(peer.node_id, local_sockets=False) == (5, ["tcp"], ["tcp"])


@pytest.mark.parametrize("squatter", ["silent", "closes"])
async def test_a_name_held_by_another_process_leaves_the_node_reachable_over_tcp(
    squatter: str,
) -> None:
    port = free_port()
    taken = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        taken.bind(f"\0cloudy/127.0.0.1:{port}")
        taken.listen(8)
        if squatter == "closes":
            taken.setblocking(False)
        with NodeProcess("remote_funcs", cookie=COOKIE, port=port) as node:
            assert "not listening on the local socket" in node.log()

            async def accept_and_close() -> None:
                loop = asyncio.get_running_loop()
                while True:
                    conn, _ = await loop.sock_accept(taken)
                    conn.close()

            closer = asyncio.ensure_future(accept_and_close()) if squatter == "closes" else None
            try:
                # dialled on the name first: whatever answers there fails the handshake
                # without refusing us, and TCP gets the rest of the connect timeout
                total, here, there = await talk(node.node_id, connect_timeout=4.0)
            finally:
                if closer is not None:
                    closer.cancel()
        assert (total, here, there) == (5, ["tcp"], ["tcp"])
    finally:
        taken.close()


SQUAT = """
import socket, sys
held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
held.bind(sys.argv[1].replace("@", chr(0), 1))
held.listen(8)
print("ready", flush=True)
sys.stdin.read()  # hold the name until our stdin closes
"""


def squat_as_nobody(name: str) -> subprocess.Popen[str]:
    """A process of user nobody holding the abstract socket *name* (``@`` for the NUL)."""
    return subprocess.Popen(
        ["/usr/bin/python3", "-c", SQUAT, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        user=65534,
        group=65534,
    )


async def test_a_name_held_by_another_user_is_not_dialled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to run the squatter as another user")
    port = free_port()
    # another user's process holds the name: it could refuse us in the node's place,
    # or relay our handshake to the node and read what follows
    squatter = squat_as_nobody(f"@cloudy/127.0.0.1:{port}")
    try:
        assert squatter.stdout is not None and squatter.stdout.readline().strip() == "ready"
        with NodeProcess("remote_funcs", cookie=COOKIE, port=port) as node:
            assert "not listening on the local socket" in node.log()
            assert await talk(node.node_id) == (5, ["tcp"], ["tcp"])
        said = [r.getMessage() for r in caplog.records]
        assert any("held by another user (uid 65534): dialling TCP" in x for x in said), said
    finally:
        squatter.kill()
        squatter.wait()
