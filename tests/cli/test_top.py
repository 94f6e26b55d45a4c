"""``cloudy top`` and ``cloudy ps``: the view made from fixed samples, then the commands
against nodes in other OS processes (``top`` in a pseudo-terminal, read with pyte)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pexpect
import pyte
import pytest
from procs import as_on_a_terminal, ended_by_pid
from rich.console import Console, RenderableType
from top_funcs import LEFT_IN_MAILBOX, PARKED, TICKER

from cloudy import NodeId, NodeStats, PeerStats, ProcessId, ProcessInfo, ProcessSummary
from cloudy.cli import main
from cloudy.observe.sample import Sample, merge_found
from cloudy.observe.top_view import per_second, process_rows, process_table, screen
from cloudy.testing import NodeProcess, free_port

CLOUDY = [sys.executable, "-m", "cloudy"]
ME = NodeId("127.0.0.1", 9000)  # the observing node
A, B, C = (NodeId("127.0.0.1", port) for port in (9001, 9002, 9003))


# --- the view, from fixed samples -----------------------------------------------------


def render(renderable: RenderableType) -> str:
    console = Console(width=160, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def row(text: str, node: NodeId) -> list[str]:
    """The words of *node*'s row in the nodes table of *text* (its first column)."""
    (line,) = [
        line for line in text.splitlines() if line[3:].startswith(f"{node.host}:{node.port} ")
    ]
    return line.replace("▶", "").split()


def peer(node: NodeId, heartbeat: str = "ok", state: str = "up") -> PeerStats:
    return PeerStats(node=node, state=state, silent_for=0.1, heartbeat=heartbeat)


def stats(node: NodeId, uptime: float, total: int, peers: list[PeerStats]) -> NodeStats:
    """Stats whose counters are all *total*-based: in = total, out = 2 total, bytes 100x."""
    return NodeStats(
        node=node,
        processes=7,
        registered_names=2,
        monitors=1,
        links=0,
        uptime=uptime,
        messages_in=total,
        messages_out=2 * total,
        bytes_in=100 * total,
        bytes_out=200 * total,
        peers=peers,
    )


def proc(
    node: NodeId, lid: int, names: list[str], mailbox: int, got: int, sent: int
) -> ProcessSummary:
    pid = ProcessId(node, lid)
    info = ProcessInfo(
        node=node,
        names=names,
        mailbox_length=mailbox,
        monitors=[],
        links=[ProcessId(node, 1)],
        waiting="receive",
        messages_in=got,
        messages_out=sent,
    )
    return ProcessSummary(pid=pid, info=info)


PEERS_OF_A = [peer(B), peer(C, "late", "busy"), peer(ME)]


def two_samples() -> tuple[Sample, Sample]:
    """A and B two seconds apart (A's counters up 1000, B's up 50), C not answering."""
    before = Sample(
        at=10.0,
        me=ME,
        nodes={A: stats(A, 100.0, 1000, PEERS_OF_A), B: stats(B, 100.0, 0, [peer(A)])},
        selected=A,
        processes=[proc(A, 1, ["logger"], 0, 10, 0), proc(A, 4, ["cloudy.ring"], 2, 100, 50)],
    )
    now = Sample(
        at=12.0,
        me=ME,
        nodes={
            A: stats(A, 102.0, 2000, PEERS_OF_A),
            B: stats(B, 102.0, 50, [peer(A, "lost", "closed")]),
            C: "no answer within 2 s",
        },
        selected=A,
        processes=[
            proc(A, 1, ["logger"], 0, 10, 0),
            proc(A, 4, ["cloudy.ring"], 7, 300, 90),
            proc(A, 9, [], 0, 6, 2),  # born since the last sample
        ],
    )
    return before, now


def test_each_node_shows_its_rates_per_second_and_each_peers_heartbeat() -> None:
    before, now = two_samples()
    text = render(screen(now, before, 2.0, keys=True))
    # node, up, procs, conns, msgs in/s, msgs out/s, in B/s, out B/s, first peer
    assert row(text, A) == ["127.0.0.1:9001", "1m42s", "7", "2", "500", "1.0k", "50.0k",
                            "100.0k", "127.0.0.1:9002", "ok"]  # fmt: skip
    assert row(text, B)[1:8] == ["1m42s", "7", "0", "25", "50", "2.5k", "5.0k"]
    assert row(text, B)[8:] == ["127.0.0.1:9001", "lost", "closed"]
    assert row(text, C) == ["127.0.0.1:9003", *["-"] * 7, "no", "answer", "within", "2", "s"]
    assert "127.0.0.1:9003 late busy" in text  # A's second peer, on a line of its own
    assert "127.0.0.1:9000 ok" not in text  # the observer is no peer worth showing
    assert "3 nodes" in text and "q: quit" in text
    noted = render(screen(now, before, 2.0, keys=False, notes=["12:00:00 refusing x"]))
    assert "log: 12:00:00 refusing x" in noted and "q: quit" not in noted


def test_rates_are_unknown_without_an_earlier_sample_or_after_a_restart() -> None:
    before, now = two_samples()
    assert row(render(screen(now, None, 2.0, keys=False)), A)[4:8] == ["-"] * 4
    restarted = Sample(now.at, ME, {A: stats(A, 1.0, 5, [])}, A, now.processes)
    assert row(render(screen(restarted, before, 2.0, keys=False)), A)[4:8] == ["-"] * 4
    assert [r["messages_in_per_s"] for r in process_rows(restarted, before)] == [5.0, 150.0, 3.0]
    assert per_second(5, 10, 1.0) is None  # a counter that went back is no rate
    assert per_second(30, 10, 0.0) is None
    assert per_second(30, 10, 4.0) == 5.0


def test_process_rows_give_totals_rates_and_who_is_linked() -> None:
    before, now = two_samples()
    rows = process_rows(now, before)
    assert json.loads(json.dumps(rows)) == rows  # what `cloudy ps --json` prints
    ring = rows[1]
    assert ring["pid"] == "pid://127.0.0.1:9001:0:4" and ring["names"] == ["cloudy.ring"]
    assert (ring["mailbox_length"], ring["waiting"]) == (7, "receive")
    assert ring["links"] == ["pid://127.0.0.1:9001:0:1"] and ring["monitors"] == []
    assert (ring["messages_in"], ring["messages_out"]) == (300, 90)
    assert (ring["messages_in_per_s"], ring["messages_out_per_s"]) == (100.0, 20.0)
    assert (rows[0]["messages_in_per_s"], rows[2]["messages_in_per_s"]) == (0.0, 3.0)
    assert [r["messages_in_per_s"] for r in process_rows(now, None)] == [None] * 3


def test_the_process_table_shows_names_mailboxes_and_rates() -> None:
    before, now = two_samples()
    text = render(process_table(now, before))
    assert "processes of nid://127.0.0.1:9001:0" in text
    lines = {line.split()[0]: line.split() for line in text.splitlines()[3:] if line.strip()}
    # pid, name, waiting in, mailbox, links, monitors, msgs in/s, msgs out/s
    assert lines["4"] == ["4", "cloudy.ring", "receive", "7", "1", "0", "100", "20"]
    assert lines["9"] == ["9", "-", "receive", "0", "1", "0", "3.0", "1.0"]
    failed = Sample(now.at, ME, now.nodes, A, "no answer within 2 s")
    assert "processes of nid://127.0.0.1:9001:0: no answer within 2 s" in render(
        screen(failed, before, 1.0, keys=False)
    )


def test_a_round_of_discovery_adds_nodes_and_drops_none() -> None:
    # this round missed A (its answer lost or late) and found C and the observer itself
    assert merge_found([B, A], [C, ME, B], ME) == [A, B, C]
    assert merge_found([A, B], [], ME) == [A, B]


# --- the commands' arguments ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["ps"], "required"),
        (["ps", "nowhere"], "not a node id"),
        (["top", "127.0.0.1:0"], "not a node id"),
        (["top", "--node", "x:y"], "not a node id"),
        (["top", "--interval", "0"], "longer than zero"),
        (["top", "--interval", "-1s"], "not a duration"),
    ],
)
def test_bad_arguments_give_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and says in lines[0], lines


# --- against nodes in other OS processes ----------------------------------------------


def cookie_env(cookie: str) -> dict[str, str]:
    return dict(os.environ, CLOUDY_COOKIE=cookie)


def test_ps_json_lists_registered_processes_with_their_mailboxes_and_messages() -> None:
    cookie = f"ps-{os.getpid()}-{time.monotonic_ns()}"
    with NodeProcess("top_funcs", cookie=cookie) as node:
        node.wait_for_log("cloudy.testing: ready")
        target = f"{node.host}:{node.port}"
        done = subprocess.run(
            [*CLOUDY, "ps", target, "--json", "--interval", "1s"],
            env=cookie_env(cookie),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        rows = json.loads(done.stdout)
        (parked,) = [r for r in rows if r["names"] == [PARKED]]
        assert parked["pid"].startswith(f"pid://{target}:0:")
        assert parked["mailbox_length"] == LEFT_IN_MAILBOX
        assert parked["waiting"] == "receive"
        assert parked["messages_in_per_s"] == 0.0  # it took its messages before the samples
        # a node counts each process's messages from the first question on (the first
        # sample): the ticker's, between the two samples a second apart
        (ticker,) = [r for r in rows if r["names"] == [TICKER]]
        assert ticker["messages_in"] > 0 and ticker["messages_out"] > 0
        assert ticker["messages_in_per_s"] > 0 and ticker["messages_out_per_s"] > 0
        assert ticker["mailbox_length"] in (0, 1)
        plain = subprocess.run(
            [*CLOUDY, "ps", f"nid://{target}:0", "--interval", "0"],
            env=cookie_env(cookie),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert plain.returncode == 0, plain.stderr
        (line,) = [line for line in plain.stdout.splitlines() if f" {PARKED} " in line]
        assert line.split()[2:4] == ["receive", str(LEFT_IN_MAILBOX)]
        wrong = subprocess.run(
            [*CLOUDY, "ps", target, "--interval", "0"],
            env=cookie_env("not-the-cookie"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    # the node's own log line about the refusal may come first; the last line is ours
    assert wrong.returncode == 1 and wrong.stdout == "" and "Traceback" not in wrong.stderr
    last = wrong.stderr.splitlines()[-1]
    assert last.startswith(f"cloudy: cannot list the processes of nid://{target}:0: "), last
    assert last.endswith("the peer does not share our cookie")


def test_top_once_of_a_node_that_does_not_answer_says_why_and_fails() -> None:
    port = free_port()  # nothing listens there
    done = subprocess.run(
        [*CLOUDY, "top", f"127.0.0.1:{port}", "--once", "--interval", "0.1"],
        env=cookie_env("any"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stderr == ""
    assert row(done.stdout, NodeId("127.0.0.1", port))[1:8] == ["-"] * 7
    assert f"nid://127.0.0.1:{port}:0 is unreachable" in done.stdout
    nobody = subprocess.run(
        [*CLOUDY, "top", "--once", "--discovery-port", str(free_udp_port())],
        env=cookie_env("nobody-has-this-cookie"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nobody.returncode == 1 and nobody.stdout == ""
    assert nobody.stderr.startswith("cloudy: no node answered (multicast ")
    assert len(nobody.stderr.splitlines()) == 1


class Terminal:
    """A command in a pseudo-terminal of 120 x 40, its screen read with pyte."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        env = as_on_a_terminal(env)  # the size comes from the pty
        env["PYTHONFAULTHANDLER"] = "1"  # (its stacks, if a test must abort it)
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(40, 120))
        self.screen = pyte.Screen(120, 40)
        self.stream = pyte.ByteStream(self.screen)

    def text(self) -> str:
        return "\n".join(self.screen.display)

    def wait_for(self, ok: Callable[[str], bool], timeout: float = 20.0) -> str:
        """The screen once *ok* holds for it; else fail, showing the screen."""
        deadline = time.monotonic() + timeout
        while not ok(text := self.text()):
            if time.monotonic() > deadline or not self.child.isalive():
                raise AssertionError(f"not on the screen in {timeout} s:\n{text}")
            try:
                data = self.child.read_nonblocking(65536, timeout=0.2)
                self.stream.feed(data if isinstance(data, bytes) else data.encode())
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                break
        return text

    def exit_status(self, timeout: float = 10.0) -> int | None:
        """The command's exit status once it ends; if it does not within *timeout*,
        fail with the Python stacks of its threads (faulthandler, on SIGABRT)."""
        try:
            self.child.expect(pexpect.EOF, timeout=timeout)
        except pexpect.TIMEOUT:
            self.child.kill(signal.SIGABRT)
            with contextlib.suppress(pexpect.TIMEOUT, pexpect.EOF):
                self.child.expect(pexpect.EOF, timeout=5)
            stacks = self.child.before
            text = stacks.decode(errors="replace") if isinstance(stacks, bytes) else str(stacks)
            raise AssertionError(
                f"still running after {timeout} s; its stacks:\n{text[-4000:]}"
            ) from None
        self.child.close()
        return self.child.exitstatus

    def end(self) -> None:
        if self.child.isalive():
            self.child.kill(signal.SIGKILL)
        self.child.close(force=True)


@contextmanager
def terminal(argv: list[str], env: dict[str, str]) -> Iterator[Terminal]:
    term = Terminal(argv, env)
    try:
        yield term
    finally:
        term.end()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def ring(slaves: int, discovery: int, env: dict[str, str]) -> Iterator[list[NodeId]]:
    """*slaves* ``cloudy slave`` processes and a ``cloudy master`` running a long send
    period over them; the nodes, the master's last. All ended by PID on leaving."""
    nodes = [NodeId("127.0.0.1", free_port()) for _ in range(slaves + 1)]
    where = ("--discovery-port", str(discovery))
    with ended_by_pid() as procs:
        for node in nodes[:-1]:
            command = [*CLOUDY, "slave", node.host, str(node.port), *where]
            procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
        master = nodes[-1]
        command = [*CLOUDY, "master", master.host, str(master.port), *where]
        command += ["--slaves", str(slaves), "--send-for", "120s"]
        procs.append(
            subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        yield nodes


def test_top_on_a_terminal_shows_every_node_and_the_rings_processes() -> None:
    discovery = free_udp_port()
    env = cookie_env(f"top-{discovery}")
    with ring(2, discovery, env) as nodes:
        first_slave = nodes[0]
        in_order = sorted(nodes, key=lambda n: (n.host, n.port))
        after = in_order[(in_order.index(first_slave) + 1) % len(nodes)]
        argv = [*CLOUDY, "top", "--discovery-port", str(discovery)]
        argv += ["--node", f"{first_slave.host}:{first_slave.port}", "--interval", "0.5"]
        with terminal(argv, env) as term:
            ids = [f"{n.host}:{n.port}" for n in nodes]
            # an id on the screen may be only a peer of a node in the table: count the
            # rows; and a screen read mid-redraw may lack any part: wait for one whole
            term.wait_for(
                lambda s: (
                    "3 nodes" in s
                    and all(i in s for i in ids)
                    and f"processes of {first_slave}" in s
                    and "cloudy.ring" in s
                )
            )
            term.child.send("n")  # the next node, in the order of the table
            term.wait_for(lambda s: f"processes of {after}" in s)
            term.child.send("q")
            assert term.exit_status() == 0


def test_top_of_named_nodes_quits_on_ctrl_c() -> None:
    cookie = f"top-c-{os.getpid()}-{time.monotonic_ns()}"
    with NodeProcess("top_funcs", cookie=cookie) as node:
        argv = [*CLOUDY, "top", f"{node.host}:{node.port}"]
        with terminal(argv, cookie_env(cookie)) as term:
            term.wait_for(lambda s: f"processes of {node.node_id}" in s and PARKED in s)
            term.child.sendintr()
            assert term.exit_status() == 0
