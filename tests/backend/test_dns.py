"""Peers from DNS against a real DNS server (dnsmasq): SRV, A and AAAA records, names
that give nothing usable, a server down, runaway answers, TTLs, the watch's log lines,
and a `cloudy slave` whose DNS name also names something that is no cloudy node.

Each test's dnsmasq listens on 127.0.0.1 on a port free for UDP and TCP, and answers
only for names under ``.test`` (others are NXDOMAIN).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import dns.rrset
import pytest
from dnsmasq import Dnsmasq, free_dns_port
from procs import ended_by_pid, wait_listening

from cloudy import NodeId
from cloudy.backend.dns import MAX_RECORDS, DnsError, Record, dns_lookup, parse_server
from cloudy.backend.dns_watch import DnsWatch
from cloudy.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
CLOUDY = [sys.executable, "-m", "cloudy"]
TIMEOUT = 1.0  # every lookup's here: a server that does not answer costs about this
DNS_LOG = "cloudy.backend.dns"
NOT_CLOUDY = "does not answer as a cloudy node with our cookie"
HTTP_REPLY = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"  # a web server's


# --- the DNS server ----------------------------------------------------------------------


class Server(Dnsmasq):
    """The test helper's dnsmasq, with a way to wait for its hosts file's changes."""

    def reads(self) -> int:
        """How many times dnsmasq has read its hosts directory so far."""
        return (self.workdir / "dnsmasq.log").read_text().count(f"read {self.hosts_dir}")

    def change_hosts(self, records: Iterable[tuple[str, str]]) -> None:
        """Replace the hosts file's records; return once dnsmasq has read them."""
        before = self.reads()
        self.set_hosts(records)
        self.wait_reloaded(before + 1)


StartDns = Callable[..., Server]


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[StartDns]:
    """Start a dnsmasq with the records given (``srv``, ``hosts``, ``extra`` as the
    helper takes them); every one started is ended by its PID afterwards."""
    started: list[Server] = []

    def start(
        *,
        srv: Sequence[tuple[str, str, int]] = (),
        hosts: Sequence[tuple[str, str]] = (),
        extra: Sequence[str] = (),
    ) -> Server:
        for attempt in range(5):  # a port free a moment ago may be taken since
            workdir = tmp_path / f"dnsmasq-{len(started)}"
            server = Server(
                workdir, "127.0.0.1", free_dns_port(), srv=srv, hosts=hosts, extra=extra
            )
            started.append(server)
            try:
                server.start()
                return server
            except RuntimeError:
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def lookup(
    server: Server | str, name: str, port: int = 7000, timeout: float = TIMEOUT
) -> list[Record]:
    """The records the real lookup gives for *name*, asking *server* (an address:port)."""
    address = server.server if isinstance(server, Server) else server
    resolve = dns_lookup(parse_server(address), timeout=timeout)

    async def records() -> list[Record]:
        return await resolve(name, port)

    return asyncio.run(records())


def ask(server: Server, name: str, kind: str) -> dns.message.Message:
    """*server*'s own answer over UDP, not through the code under test."""
    query = dns.message.make_query(name, kind)
    return dns.query.udp(query, server.address, port=server.port, timeout=5)


# --- SRV records -----------------------------------------------------------------------


def test_srv_records_give_each_target_at_its_port_and_the_addresses_are_not_used(
    dnsmasq: StartDns,
) -> None:
    server = dnsmasq(
        srv=[
            ("_cloudy._tcp.c.test", "n1.c.test", 7001),
            ("_cloudy._tcp.c.test", "n2.c.test", 7002),
        ],
        hosts=[("n1.c.test", "127.0.0.1"), ("n2.c.test", "127.0.0.2"), ("c.test", "10.9.9.9")],
    )
    assert ask(server, "c.test", "A").answer  # the fallback is there, and not taken
    assert lookup(server, "c.test", 7000) == [
        Record(0, 0, "127.0.0.1", 7001),
        Record(0, 0, "127.0.0.2", 7002),
    ]


def test_srv_records_come_lower_priority_first_then_higher_weight(dnsmasq: StartDns) -> None:
    lines = [  # name,target,port,priority,weight; in no particular order
        "srv-host=_cloudy._tcp.p.test,n1.p.test,8001,20,5",
        "srv-host=_cloudy._tcp.p.test,n2.p.test,8002,10,1",
        "srv-host=_cloudy._tcp.p.test,n1.p.test,8003,10,9",
        "srv-host=_cloudy._tcp.p.test,n2.p.test,8004,30,50",
    ]
    server = dnsmasq(hosts=[("n1.p.test", "127.0.0.1"), ("n2.p.test", "127.0.0.2")], extra=lines)
    assert lookup(server, "p.test", 0) == [
        Record(10, 9, "127.0.0.1", 8003),
        Record(10, 1, "127.0.0.2", 8002),
        Record(20, 5, "127.0.0.1", 8001),
        Record(30, 50, "127.0.0.2", 8004),
    ]


def test_srv_records_win_even_when_their_targets_have_no_address(dnsmasq: StartDns) -> None:
    server = dnsmasq(
        srv=[("_cloudy._tcp.x.test", "gone.x.test", 7001)], hosts=[("x.test", "10.0.0.9")]
    )
    assert ask(server, "_cloudy._tcp.x.test", "SRV").answer
    records: list[Record] = []
    with contextlib.suppress(DnsError):  # an error would do: "the SRV records win"
        records = lookup(server, "x.test", 7000)
    assert Record(0, 0, "10.0.0.9", 7000) not in records


# --- A and AAAA records ----------------------------------------------------------------


def test_a_and_aaaa_records_give_peers_at_the_port_given(dnsmasq: StartDns) -> None:
    server = dnsmasq(hosts=[("a.test", "127.0.0.5"), ("a.test", "127.0.0.6"), ("a.test", "::1")])
    assert lookup(server, "a.test", 9000) == [
        Record(0, 0, "127.0.0.5", 9000),
        Record(0, 0, "127.0.0.6", 9000),
        Record(0, 0, "::1", 9000),
    ]
    with pytest.raises(DnsError, match=r"a\.test has A/AAAA records but no port"):
        lookup(server, "a.test", 0)  # a node on port 0 could only use SRV records


# --- names that give nothing usable ----------------------------------------------------


def test_a_name_without_records_is_an_error_naming_it(dnsmasq: StartDns) -> None:
    server = dnsmasq(hosts=[("a.test", "127.0.0.5")])
    with pytest.raises(DnsError, match=r"^none\.test has no SRV \(_cloudy\._tcp\.none\.test\)"):
        lookup(server, "none.test")


def test_a_name_with_only_records_of_another_type_is_an_error(dnsmasq: StartDns) -> None:
    server = dnsmasq(extra=["txt-record=t.test,not a peer"])
    assert ask(server, "t.test", "TXT").answer  # the name is there, as TXT only
    with pytest.raises(DnsError, match=r"^t\.test has no SRV .*, A or AAAA records"):
        lookup(server, "t.test")


# --- the server down -------------------------------------------------------------------


@pytest.mark.load
def test_a_port_nobody_listens_on_is_an_error_within_the_timeout() -> None:
    nobody = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    started = time.monotonic()
    with pytest.raises(DnsError, match=rf"within {TIMEOUT:g} s"):
        lookup(nobody, "c.test")
    assert time.monotonic() - started < 3.0


@pytest.mark.load
def test_a_server_that_never_answers_is_an_error_within_the_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # takes every query, answers none
        started = time.monotonic()
        with pytest.raises(DnsError, match=rf"c\.test within {TIMEOUT:g} s"):
            lookup(f"127.0.0.1:{silent.getsockname()[1]}", "c.test")
        took = time.monotonic() - started
    assert TIMEOUT * 0.9 < took < 3.0


class SlowDns:
    """A DNS server that answers every query right, each after *delay* s: the SRV query
    with *targets* targets (no addresses in its additional section), each target's A
    query with 127.0.0.1, its AAAA query with no records."""

    def __init__(self, delay: float, targets: int) -> None:
        self.delay, self.targets = delay, targets
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.server = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._replies: list[threading.Timer] = []

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if ready:
                with contextlib.suppress(OSError):
                    data, peer = self.sock.recvfrom(4096)
                    reply = threading.Timer(self.delay, self._answer, (data, peer))
                    self._replies.append(reply)
                    reply.start()

    def _answer(self, data: bytes, peer: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        if question.rdtype == dns.rdatatype.SRV:
            targets = [f"0 0 {7000 + i} n{i}.s.test." for i in range(self.targets)]
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "SRV", *targets))
        elif question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "127.0.0.1"))
        with contextlib.suppress(OSError):
            self.sock.sendto(response.to_wire(), peer)

    def __enter__(self) -> SlowDns:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for reply in self._replies:
            reply.cancel()
            reply.join(timeout=5)
        self.sock.close()


@pytest.mark.load
def test_a_slow_server_is_given_about_the_timeout_for_the_whole_lookup() -> None:
    # 13 queries (1 SRV, then A and AAAA for each of 6 targets), each answered in 0.2 s:
    # well within the timeout each, and 2.6 s together. (The timeout is large beside
    # the delay, so that no query of it times out however loaded the machine is.)
    timeout = 2.0
    with SlowDns(delay=0.2, targets=6) as slow:
        started = time.monotonic()
        with contextlib.suppress(DnsError):  # an error would do, but in time
            lookup(slow.server, "s.test", timeout=timeout)
        took = time.monotonic() - started
    assert took < timeout * 1.2, f"a lookup with timeout={timeout:g} took {took:.1f} s"


# --- thousands of records --------------------------------------------------------------


@pytest.mark.load
def test_thousands_of_records_are_refused_and_the_next_lookup_still_works(
    dnsmasq: StartDns,
) -> None:
    server = dnsmasq(hosts=[("a.test", "127.0.0.5")])
    server.change_hosts(("big.test", f"10.{i // 250}.{i % 250}.1") for i in range(2000))
    truncated = ask(server, "big.test", "A")
    assert truncated.flags & dns.flags.TC  # over UDP only a few dozen fit
    started = time.monotonic()
    # dnspython asks again over TCP, gets all 2000 and the lookup refuses them
    with pytest.raises(DnsError, match=rf"big\.test: more than {MAX_RECORDS} records"):
        lookup(server, "big.test")
    assert time.monotonic() - started < 3.0
    assert lookup(server, "a.test", 9000) == [Record(0, 0, "127.0.0.5", 9000)]


# --- TTLs ------------------------------------------------------------------------------


def test_a_huge_ttl_keeps_nothing_the_next_lookup_sees_a_change(dnsmasq: StartDns) -> None:
    server = dnsmasq(extra=["local-ttl=2147483647"])
    server.change_hosts([("w.test", "127.0.0.1"), ("w.test", "127.0.0.2")])
    assert ask(server, "w.test", "A").answer[0].ttl == 2147483647
    assert [r.host for r in lookup(server, "w.test")] == ["127.0.0.1", "127.0.0.2"]
    server.change_hosts([("w.test", "127.0.0.3")])
    assert [r.host for r in lookup(server, "w.test")] == ["127.0.0.3"]
    server.change_hosts([("w.test", "127.0.0.1"), ("w.test", "127.0.0.4")])
    assert [r.host for r in lookup(server, "w.test")] == ["127.0.0.1", "127.0.0.4"]


# --- the watch -------------------------------------------------------------------------


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


@pytest.mark.load
async def test_the_watch_logs_records_gone_as_hints_and_keeps_its_peers_while_dns_is_down(
    dnsmasq: StartDns, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=DNS_LOG)
    server = dnsmasq()
    server.change_hosts([("w.test", "127.0.0.1"), ("w.test", "127.0.0.2")])
    watch = DnsWatch("w.test", 7000, dns_lookup(parse_server(server.server), timeout=TIMEOUT))
    one, two = NodeId("127.0.0.1", 7000), NodeId("127.0.0.2", 7000)

    await watch.poll()
    assert watch.peers == [one, two]
    assert _warnings(caplog) == []

    server.change_hosts([("w.test", "127.0.0.1")])
    caplog.clear()
    await watch.poll()
    assert watch.peers == [one]
    assert _warnings(caplog) == [
        "DNS discovery: w.test no longer names 127.0.0.2:7000 "
        "(a hint only: their connections decide)"
    ]

    server.stop()
    caplog.clear()
    started = time.monotonic()
    await watch.poll()
    assert time.monotonic() - started < 3.0
    assert watch.peers == [one]  # the last good answer
    assert watch.error is not None and "w.test" in watch.error
    assert watch.failures == 1
    assert _warnings(caplog) == [f"DNS discovery: {watch.error}; keeping the 1 peer known"]

    caplog.clear()
    await watch.poll()  # failing on: logged again only a minute later
    assert watch.failures == 2 and watch.peers == [one]
    assert _warnings(caplog) == []

    server.start()
    caplog.clear()
    await watch.poll()
    assert watch.error is None and watch.failures == 0
    assert watch.peers == [one]
    assert _warnings(caplog) == ["DNS discovery: w.test answers again (after 2 failed lookups)"]


# --- in OS processes -------------------------------------------------------------------


class NotCloudy:
    """A TCP server that is no cloudy node: it sends *reply* to whoever connects and
    hangs up."""

    def __init__(self, reply: bytes = HTTP_REPLY) -> None:
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if not ready:
                continue
            with contextlib.suppress(OSError):
                conn, _ = self.sock.accept()
                with conn:
                    self.accepted += 1
                    conn.sendall(self.reply)

    def __enter__(self) -> NotCloudy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.mark.load
def test_a_slave_says_which_dns_peer_is_no_cloudy_node_and_goes_on_serving(
    dnsmasq: StartDns, tmp_path: Path
) -> None:
    env = dict(
        os.environ,
        CLOUDY_COOKIE=f"dns-{os.getpid()}-{time.monotonic_ns()}",
        PYTHONPATH=str(ROOT / "src"),
    )
    port = free_port()
    with NotCloudy() as stranger, ended_by_pid() as started:
        server = dnsmasq(
            srv=[
                ("_cloudy._tcp.c.test", "n.c.test", port),  # the slave itself
                ("_cloudy._tcp.c.test", "n.c.test", stranger.port),
            ],
            hosts=[("n.c.test", "127.0.0.1")],
        )
        err = tmp_path / "slave.err"
        with err.open("w") as err_file:
            started.append(
                subprocess.Popen(
                    [
                        *CLOUDY,
                        "slave",
                        "127.0.0.1",
                        str(port),
                        "--peers-dns",
                        "c.test",
                        "--dns-server",
                        server.server,
                        "--dns-interval",
                        "0.2s",
                    ],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err_file,
                )
            )
        slave = started[0]
        wait_listening(port)
        # three tries 0.2 s apart take about a second; the slack is for a loaded machine
        deadline = time.monotonic() + 8.0
        while NOT_CLOUDY not in err.read_text() and time.monotonic() < deadline:
            assert slave.poll() is None, err.read_text()
            time.sleep(0.05)
        said = [line for line in err.read_text().splitlines() if NOT_CLOUDY in line]
        assert said == [
            f"DNS discovery: 127.0.0.1:{stranger.port}, named by c.test, does not answer "
            "as a cloudy node with our cookie"
        ], err.read_text()
        assert stranger.accepted >= 1

        health = subprocess.run(
            [*CLOUDY, "health", "127.0.0.1", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert health.returncode == 0, health.stderr
        time.sleep(0.5)  # a few more polls and reaches
        assert slave.poll() is None  # it goes on serving
        assert [line for line in err.read_text().splitlines() if NOT_CLOUDY in line] == said


@pytest.mark.load
@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"", id="hangs-up"),
        pytest.param(HTTP_REPLY, id="http"),
    ],
)
def test_health_against_no_cloudy_node_exits_1_with_one_line(reply: bytes) -> None:
    env = dict(os.environ, CLOUDY_COOKIE=f"dns-health-{os.getpid()}", PYTHONPATH=str(ROOT / "src"))
    with NotCloudy(reply) as stranger:
        health = subprocess.run(
            [*CLOUDY, "health", "127.0.0.1", str(stranger.port), "--timeout", "1s"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert health.returncode == 1
    assert health.stderr.splitlines() == [
        f"cloudy health: no cloudy node with this cookie answered at "
        f"127.0.0.1:{stranger.port} within 1 s"
    ]


# --- parse_server ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "server"),
    [
        ("10.0.0.1", ("10.0.0.1", 53)),
        ("10.0.0.1:5353", ("10.0.0.1", 5353)),
        ("[::1]:53", ("::1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
        (" 127.0.0.1:53 ", ("127.0.0.1", 53)),
    ],
)
def test_a_dns_server_is_an_address_and_a_port_53_by_default(
    text: str, server: tuple[str, int]
) -> None:
    assert parse_server(text) == server


@pytest.mark.parametrize(
    "text", ["not-an-address", "dns.example:53", "10.0.0.1:0", "10.0.0.1:65536", "[::1]:x", ""]
)
def test_a_dns_server_that_is_not_an_address_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a port|a DNS server is an address"):
        parse_server(text)
