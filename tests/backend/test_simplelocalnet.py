"""SimpleLocalnet on one machine: the minimal example, discovery, bad datagrams, peers, tools."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import remote_funcs as rf
from procs import ended_by_pid, wait_serving

from cloudy import NodeId, call, closure
from cloudy.backend import simplelocalnet as sl
from cloudy.backend.discovery import DEFAULT_GROUP
from cloudy.backend.tools import doctor
from cloudy.testing import free_port
from cloudy.wire import discovery as D

ROOT = Path(__file__).resolve().parents[2]
CLOUDY = [sys.executable, "-m", "cloudy"]


def unique_cookie(name: str) -> str:
    return f"{name}-{os.getpid()}-{time.monotonic_ns()}"


def cloudy_slave(port: int, discovery: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`cloudy slave 127.0.0.1 PORT` with its own discovery port (the caller ends it)."""
    return subprocess.Popen(
        [*CLOUDY, "slave", "127.0.0.1", str(port), "--discovery-port", discovery],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


# --- the seed's minimal example ----------------------------------------------------------


def test_the_minimal_example_prints_the_four_slaves_and_they_exit_by_themselves() -> None:
    cookie = unique_cookie("minimal")
    env = dict(os.environ, CLOUDY_COOKIE=cookie)
    ports = [free_port() for _ in range(4)]
    example = str(ROOT / "examples" / "minimal.py")
    with ended_by_pid() as started:
        for port in ports:
            started.append(
                subprocess.Popen(
                    [sys.executable, example, "slave", "127.0.0.1", str(port)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for port in ports:
            wait_serving(port, cookie)
        # the master on a port the system picks: one picked free beforehand may be taken
        # by another test's connection by now
        master = subprocess.run(
            [sys.executable, example, "master", "127.0.0.1", "0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert master.returncode == 0, master.stderr
        expected = sorted(f"nid://127.0.0.1:{p}:0" for p in ports)
        (line,) = master.stdout.splitlines()
        found = re.fullmatch(r"Slaves: \[(.*)\]", line)
        assert found is not None, line
        assert sorted(found.group(1).split(", ")) == expected
        for slave in started:  # each ends by itself, soon
            assert slave.wait(timeout=5) == 0


def test_free_ports_come_from_below_the_ports_of_outgoing_connections() -> None:
    # (a port from that range may go to some connection before the node binds it)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        ports = {free_port(kind) for _ in range(20)}
        assert all(low // 2 <= port < low for port in ports), ports
        for port in ports:  # and free: each can be bound
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", port))


# --- discovery in one process -------------------------------------------------------------


@contextlib.asynccontextmanager
async def backends(
    count: int, multicast_port: int, cookie: str, *, discovery: bool = True
) -> AsyncIterator[list[sl.Backend]]:
    started = [
        sl.initialize_backend(
            "127.0.0.1", 0, multicast_port=multicast_port, cookie=cookie, discovery=discovery
        )
        for _ in range(count)
    ]
    try:
        for b in started:
            await b.new_local_node()
        yield started
    finally:
        for b in started:
            await b.close()


async def test_backends_find_each_other_and_themselves() -> None:
    port, cookie = free_port(socket.SOCK_DGRAM), unique_cookie("find")
    async with backends(3, port, cookie) as found:
        ids = sorted((b.node.node_id for b in found), key=str)
        for b in found:
            assert sorted(await b.find_peers(0.5), key=str) == ids


async def test_a_closed_node_is_no_longer_found() -> None:
    port, cookie = free_port(socket.SOCK_DGRAM), unique_cookie("closed")
    async with backends(3, port, cookie) as found:
        gone = found.pop()
        await gone.close()
        peers = await found[0].find_peers(0.5)
        assert gone.node.node_id not in peers
        assert sorted(peers, key=str) == sorted((b.node.node_id for b in found), key=str)


async def test_clusters_with_different_cookies_never_see_each_other() -> None:
    port = free_port(socket.SOCK_DGRAM)
    async with (
        backends(2, port, unique_cookie("one")) as one,
        backends(2, port, unique_cookie("two")) as two,
    ):
        assert set(await one[0].find_peers(0.5)) == {b.node.node_id for b in one}
        assert set(await two[0].find_peers(0.5)) == {b.node.node_id for b in two}
        assert one[0].dropped_datagrams.get("cookie", 0) > 0  # it heard the others, and ignored


def send_datagrams(port: int, datagrams: list[bytes]) -> None:
    """Multicast *datagrams* to the group on loopback only (TTL 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        for data in datagrams:
            s.sendto(data, (DEFAULT_GROUP, port))


async def test_bad_datagrams_are_counted_and_ignored_and_discovery_goes_on() -> None:
    port, cookie = free_port(socket.SOCK_DGRAM), unique_cookie("bad")
    other_key = D.discovery_key(b"another cookie")
    good_key = D.discovery_key(cookie.encode())
    signed = D.encode(good_key, D.Who(os.urandom(D.NONCE_SIZE), time.time(), 0))
    bad = [
        b"",
        b"garbage",
        os.urandom(200),
        D.encode(other_key, D.Who(os.urandom(D.NONCE_SIZE), time.time(), 0)),
        signed[:4] + bytes([9]) + signed[5:],  # another version
        signed[:-1] + bytes([signed[-1] ^ 1]),  # a flipped bit in the MAC
        D.encode(good_key, D.Who(os.urandom(D.NONCE_SIZE), time.time(), 0))
        + b"x" * 2000,  # oversized
    ]
    async with backends(2, port, cookie) as found:
        send_datagrams(port, bad)
        await asyncio.sleep(0.2)
        dropped = found[0].dropped_datagrams
        assert dropped.get("foreign", 0) >= 3
        assert dropped.get("cookie", 0) >= 2
        assert dropped.get("version", 0) >= 1
        assert dropped.get("oversized", 0) >= 1
        assert set(await found[1].find_peers(0.5)) == {b.node.node_id for b in found}


class FakeResponder(asyncio.DatagramProtocol):
    """Answers every request with a correctly signed Here naming a node that is not there."""

    def __init__(self, key: bytes, fake: NodeId) -> None:
        self.key, self.fake = key, fake
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        with contextlib.suppress(D.DatagramError):
            msg = D.decode(self.key, data)
            if isinstance(msg, D.Who) and self.transport is not None:
                here = D.Here(msg.nonce, self.fake.host, self.fake.port)
                self.transport.sendto(D.encode(self.key, here), addr)


async def test_an_answer_naming_an_unreachable_node_is_left_out() -> None:
    port, cookie = free_port(socket.SOCK_DGRAM), unique_cookie("fake")
    fake = NodeId("127.0.0.1", free_port())  # nothing listens there
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((DEFAULT_GROUP, port))
    membership = socket.inet_aton(DEFAULT_GROUP) + socket.inet_aton("127.0.0.1")
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    responder = FakeResponder(D.discovery_key(cookie.encode()), fake)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: responder, sock=sock
    )
    try:
        async with backends(2, port, cookie) as found:
            peers = await found[0].find_peers(0.5)
            assert fake not in peers
            assert set(peers) == {b.node.node_id for b in found}
    finally:
        transport.close()


# --- static peers -------------------------------------------------------------------------


async def test_static_peers_are_asked_over_tcp_where_multicast_is_off() -> None:
    cookie = unique_cookie("static")
    down = NodeId("127.0.0.1", free_port())
    async with (
        backends(2, 9, cookie, discovery=False) as up,
        backends(1, 9, "another-cookie", discovery=False) as stranger,
    ):
        listed = [*(b.node.node_id for b in up), down, stranger[0].node.node_id]
        asker = sl.initialize_backend(
            "127.0.0.1", 0, cookie=cookie, discovery=False, peers=listed, connect_timeout=1.0
        )
        async with asker:
            peers = await asker.find_peers(0.3)
            me = asker.node.node_id
        assert set(peers) == {me, *(b.node.node_id for b in up)}


def test_peers_come_from_cloudy_peers_and_bad_ones_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOUDY_PEERS", "10.0.0.5:8080, nid://host-b:9000:0")
    backend = sl.initialize_backend("127.0.0.1", 0, discovery=False)
    assert backend.peers == [NodeId("10.0.0.5", 8080), NodeId("host-b", 9000)]
    with pytest.raises(ValueError, match="'nonsense'"):
        sl.parse_peers("127.0.0.1:1,nonsense")


async def test_peers_in_cloudy_peers_are_asked_and_the_dead_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cookie = unique_cookie("env-peers")
    down = NodeId("127.0.0.1", free_port())
    async with backends(2, 9, cookie, discovery=False) as up:
        listed = ",".join(f"{b.node.node_id}" for b in up) + f",127.0.0.1:{down.port}"
        monkeypatch.setenv("CLOUDY_PEERS", listed)
        async with sl.initialize_backend(
            "127.0.0.1", 0, cookie=cookie, discovery=False, connect_timeout=1.0
        ) as asker:
            peers = await asker.find_peers(0.3)
            assert set(peers) == {asker.node.node_id, *(b.node.node_id for b in up)}


@pytest.mark.parametrize(
    "bad",
    ["nonsense", "host:", ":8080", "host:80x", "host:70000", "host:0", "nid://host:1:5"],
)
def test_a_peer_that_is_not_host_and_port_is_named_in_the_error(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        sl.parse_peers(f"127.0.0.1:8080,{bad}")
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        sl.initialize_backend("127.0.0.1", 0, discovery=False, peers=[bad])


def test_a_host_that_does_not_resolve_is_a_clear_error() -> None:
    with pytest.raises(OSError, match=r"cannot resolve 'no-such-host\.invalid'"):
        sl.initialize_backend("no-such-host.invalid", 0)


# --- twenty slaves --------------------------------------------------------------------------


def test_twenty_slaves_are_all_found_by_one_find_slaves_and_all_terminated() -> None:
    discovery = str(free_port(socket.SOCK_DGRAM))
    cookie = unique_cookie("twenty")
    env = dict(os.environ, CLOUDY_COOKIE=cookie)
    ports = [free_port() for _ in range(20)]
    with ended_by_pid() as started:
        for port in ports:
            started.append(cloudy_slave(port, discovery, env))
        for port in ports:
            wait_serving(port, cookie, timeout=60)

        async def master(backend: sl.Backend) -> list[NodeId]:
            async def main() -> list[NodeId]:
                # twenty answers and twenty handshakes on a loaded machine (the suite
                # runs beside it): a discovery window of 10 s, not the default 1 s
                slaves = await sl.find_slaves(backend, 10.0)
                # the ones found are the ones ended (a second discovery could miss one)
                await sl.terminate_slaves(pid.node for pid in slaves)
                return [pid.node for pid in slaves]

            node = await backend.new_local_node()
            try:
                found: list[NodeId] = await node.run_process(main)
                return found
            finally:
                await backend.close()

        backend = sl.initialize_backend(
            "127.0.0.1", 0, multicast_port=int(discovery), cookie=cookie
        )
        found = asyncio.run(master(backend))
        assert sorted(found, key=str) == sorted((NodeId("127.0.0.1", p) for p in ports), key=str)
        for slave in started:
            assert slave.wait(timeout=10) == 0


async def test_a_master_that_finds_no_slave_says_what_to_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port(socket.SOCK_DGRAM)
    backend = sl.initialize_backend(
        "127.0.0.1", 0, multicast_port=port, cookie=unique_cookie("alone")
    )

    async def proc(slaves: list[NodeId]) -> list[NodeId]:
        return slaves

    assert await sl.run_master(backend, proc) == []
    err = capsys.readouterr().err
    assert f"not enough slaves found with multicast {DEFAULT_GROUP}:{port} via 127.0.0.1" in err
    for check in ("same cookie", "firewall", "loopback address", "cloudy doctor 127.0.0.1"):
        assert check in err


def test_a_slaves_say_lines_print_on_the_master_that_took_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SimpleLocalnet's redirectLogsHere: once a master has found a slave (in its own OS
    process), what that slave's processes `say` prints on the master's node."""
    discovery = str(free_port(socket.SOCK_DGRAM))
    cookie = unique_cookie("logs")
    port = free_port()
    with ended_by_pid() as started:
        # `cloudy slave`, with the test's remote functions in its remote table
        code = "import sys, remote_funcs, cloudy.cli; sys.exit(cloudy.cli.main(sys.argv[1:]))"
        command = [sys.executable, "-c", code, "slave", "127.0.0.1", str(port)]
        env = dict(os.environ, CLOUDY_COOKIE=cookie, PYTHONPATH=str(ROOT / "tests"))
        started.append(
            subprocess.Popen([*command, "--discovery-port", discovery], env=env, text=True)
        )
        wait_serving(port, cookie)
        backend = sl.initialize_backend(
            "127.0.0.1", 0, multicast_port=int(discovery), cookie=cookie
        )

        async def proc(slaves: list[NodeId]) -> str:
            said = await call(slaves[0], closure(rf.say_here, "hello from the slave"))
            await asyncio.sleep(0.2)  # the line travels on to our logger
            await sl.terminate_slaves(slaves)
            return str(said)

        said = asyncio.run(sl.run_master(backend, proc, slaves=1, within=10))
        assert said == "hello from the slave"
        err = capsys.readouterr().err
        assert re.search(rf"pid://127\.0\.0\.1:{port}:0:\d+: hello from the slave", err), err
        assert started[0].wait(timeout=10) == 0


# --- tools ------------------------------------------------------------------------------


def test_cloudy_doctor_on_loopback_passes_warns_and_creates_no_cookie(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CLOUDY_COOKIE"}
    env["HOME"] = str(tmp_path)
    port = str(free_port(socket.SOCK_DGRAM))
    done = subprocess.run(
        [*CLOUDY, "doctor", "127.0.0.1", "--discovery-port", port],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "ok    127.0.0.1 resolves to 127.0.0.1"
    assert any(line.startswith("warn  127.0.0.1 is a loopback address") for line in lines)
    assert any("comes back" in line for line in lines if line.startswith("ok"))
    assert any("does not exist yet" in line for line in lines)
    assert not (tmp_path / ".cloudy").exists()


def test_cloudy_doctor_on_an_address_of_another_machine_fails_with_what_to_do() -> None:
    done = subprocess.run(
        [*CLOUDY, "doctor", "192.0.2.1"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert "FAIL  192.0.2.1 is not an address of this machine" in done.stdout


async def test_doctor_reports_a_cookie_file_others_can_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CLOUDY_COOKIE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".cloudy").mkdir()
    (tmp_path / ".cloudy" / "cookie").write_text("secret")
    (tmp_path / ".cloudy" / "cookie").chmod(0o644)
    status = await doctor("127.0.0.1", multicast_port=free_port(socket.SOCK_DGRAM))
    assert status == 1
    assert "chmod 600" in capsys.readouterr().out


def test_cloudy_peers_lists_a_running_slave() -> None:
    discovery = str(free_port(socket.SOCK_DGRAM))
    cookie = unique_cookie("peers")
    env = dict(os.environ, CLOUDY_COOKIE=cookie)
    port = free_port()
    with ended_by_pid() as started:
        started.append(cloudy_slave(port, discovery, env))
        wait_serving(port, cookie)
        done = subprocess.run(
            [*CLOUDY, "peers", "127.0.0.1", "--discovery-port", discovery],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f"nid://127.0.0.1:{port}:0"]


async def test_an_ipv6_only_node_finds_its_static_peers_without_multicast() -> None:
    cookie = unique_cookie("v6")
    try:
        server = sl.initialize_backend("::1", 0, cookie=cookie, discovery=False)
        await server.new_local_node()
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    try:
        asker = sl.initialize_backend("::1", 0, cookie=cookie, peers=[server.node.node_id])
        async with asker:
            assert set(await asker.find_peers(0.2)) == {asker.node.node_id, server.node.node_id}
    finally:
        await server.close()
