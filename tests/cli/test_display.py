"""What a person sees of `cloudy local`, `cloudy master` and `cloudy slave`: the live
display on a terminal (run under a pseudo-terminal, its output rendered by a terminal
emulator, pyte, and the final screen read), the plain lines when piped, a slave's
own lines, and a master's Ctrl-C seen from its slaves. Every process is ended by its
PID afterwards (found by the discovery port it was given)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pexpect
import pyte
import pytest
from procs import as_on_a_terminal, own_discovery_port

from cloudy.ring import expected_result

CLOUDY = [sys.executable, "-m", "cloudy"]
RESULT_LINE = re.compile(r"^(nid://\S+) <(\d+), (\S+)>$")
BAR = "━"


@pytest.fixture
def discovery() -> Iterator[str]:
    """A discovery port of the test's own; every process started with it is killed after."""
    with own_discovery_port() as port:
        yield port


def terminal_env(**more: str) -> dict[str, str]:
    """The environment of a program on an ordinary terminal: its size is the pty's."""
    return as_on_a_terminal(dict(os.environ)) | {"TERM": "xterm-256color"} | more


def final_screen(args: list[str], env: dict[str, str], columns: int, timeout: float) -> list[str]:
    """Run `cloudy` *args* on a pseudo-terminal of *columns* x 40 until it exits; the
    screen a person would then see, line by line (pyte renders the output)."""
    child = pexpect.spawn(
        CLOUDY[0], [*CLOUDY[1:], *args], env=env, dimensions=(40, columns), timeout=timeout
    )
    try:
        child.expect(pexpect.EOF)
        output = child.before
        assert isinstance(output, bytes)  # spawned without an encoding: bytes
    finally:
        child.close(force=True)
    screen = pyte.Screen(columns, 40)
    pyte.ByteStream(screen).feed(output)
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def rows(screen: list[str]) -> list[tuple[int, str]]:
    """(line number, line) of every line drawn with a bar."""
    return [(i, line) for i, line in enumerate(screen) if BAR in line]


# --- cloudy local ---------------------------------------------------------------------


def test_cloudy_local_on_a_terminal_ends_with_stop_each_result_once_and_the_verdict(
    discovery: str,
) -> None:
    args = ["local", "--discovery-port", discovery, "--slaves", "3"]
    args += ["--send-for", "0.5s", "--wait-for", "0.3s", "--with-seed", "4"]
    screen = final_screen(args, terminal_env(), columns=80, timeout=90)
    shown = "\n".join(screen)
    # one row per phase, in order, each once, finished: no stale bar, nothing glued on
    bars = rows(screen)
    assert [line.split()[0] for _, line in bars] == ["START", "SEND", "GRACE", "STOP"], shown
    assert re.search(r"\s\d+\.\d s 3 of 3 slaves found$", bars[0][1]), shown
    assert re.search(r"\s\d+\.\d s [\d,]+ messages$", bars[1][1]), shown
    stop = re.search(r"\s\d+\.\d s ([\d,]+) agreed; 3 results$", bars[3][1])
    assert stop is not None, shown
    assert "left" not in shown and "waiting" not in shown, shown
    # each slave's result line once, on a line of its own, above the display ...
    results = [(i, RESULT_LINE.match(line)) for i, line in enumerate(screen)]
    printed = [(i, m) for i, m in results if m is not None]
    assert len(printed) == 3 and len({m[1] for _, m in printed}) == 3, shown
    count = int(stop[1].replace(",", ""))
    total = expected_result(4, count).sum
    assert {(int(m[2]), float(m[3])) for _, m in printed} == {(count, total)}, shown
    assert max(i for i, _ in printed) < bars[0][0], shown
    # ... each slave named once on the screen (no heart's line, no table repeating
    # what they all agreed on), and the verdict right below the display
    for _, m in printed:
        assert shown.count(m[1]) == 1, shown
    verdict = screen.index(f"all 3 slaves agree: <{count}, {total!r}>")
    assert verdict == bars[-1][0] + 1, shown


def test_cloudy_local_piped_says_one_plain_line_per_phase(discovery: str) -> None:
    done = subprocess.run(
        [
            *(*CLOUDY, "local", "--discovery-port", discovery, "--slaves", "2"),
            *("--send-for", "0.4s", "--wait-for", "0.2s"),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert BAR not in done.stderr and "\x1b" not in done.stderr
    phases = [line for line in done.stderr.splitlines() if line.startswith("cloudy: ")]
    assert len(phases) == 4, done.stderr
    assert re.fullmatch(r"cloudy: START 2 of 2 slaves found in \d+\.\d s", phases[0])
    assert phases[1] == "cloudy: SEND  for 0.4 s"
    assert re.fullmatch(r"cloudy: GRACE for 0\.2 s, after \d+ messages", phases[2])
    agreed = re.fullmatch(r"cloudy: STOP  (\d+) messages agreed", phases[3])
    assert agreed is not None, phases
    # each slave's result once on stdout (the slaves' own lines), then the table
    printed = [m for line in done.stdout.splitlines() if (m := RESULT_LINE.match(line))]
    assert len(printed) == 2 and {int(m[2]) for m in printed} == {int(agreed[1])}
    assert f"all 2 slaves agree: <{agreed[1]}," in done.stdout


# --- cloudy master and cloudy slave ------------------------------------------------------


def start_slave(discovery: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """`cloudy slave` on port 0; it and its node id, read from the line it starts with."""
    slave = subprocess.Popen(
        [*CLOUDY, "slave", "127.0.0.1", "0", "--discovery-port", discovery],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert slave.stderr is not None
    line = slave.stderr.readline()
    listening = re.fullmatch(
        rf"cloudy: slave (nid://127\.0\.0\.1:(\d+):0) listening; found by multicast "
        rf"224\.0\.0\.99:{discovery} via 127\.0\.0\.1\n",
        line,
    )
    assert listening is not None, line
    return slave, listening[1]


def test_a_slave_on_port_0_says_its_node_id_with_its_port_and_why_it_ends(
    discovery: str,
) -> None:
    env = dict(os.environ, CLOUDY_COOKIE=f"display-{discovery}")
    slave, node = start_slave(discovery, env)
    port = int(node.split(":")[2])
    assert port != 0
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the port it says is the one it listens on
    slave.send_signal(signal.SIGTERM)
    _, err = slave.communicate(timeout=10)
    assert slave.returncode == -signal.SIGTERM
    assert err == f"cloudy: slave {node} ends: told to stop (SIGTERM)\n"


def test_cloudy_master_on_a_terminal_shows_how_many_slaves_it_found_while_it_waits(
    discovery: str,
) -> None:
    env = terminal_env(CLOUDY_COOKIE=f"display-{discovery}")
    slave, _ = start_slave(discovery, env)
    args = ["master", "127.0.0.1", "0", "--slaves", "2", "--discovery-port", discovery]
    started = time.monotonic()
    screen = final_screen([*args, "--discover-timeout", "2s"], env, columns=100, timeout=60)
    took = time.monotonic() - started
    shown = "\n".join(screen)
    bars = rows(screen)
    assert len(bars) == 1, shown  # no run began: START only, and no time "left" of a run
    assert re.fullmatch(
        r"START .*\s\d+\.\d s 1 of 2 slaves found \(failed\)",
        bars[0][1],
    ), shown
    assert "cloudy: found 1 of 2 slaves within 2 s" in screen, shown
    assert took < 30, took  # the 2 s asked for, not the default 30 s
    assert slave.poll() is None  # a master that gave up leaves the slave waiting
    slave.kill()
    slave.wait()


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_master_interrupted_or_killed_leaves_its_slaves_alike(
    discovery: str, how: signal.Signals
) -> None:
    env = dict(os.environ, CLOUDY_COOKIE=f"display-{discovery}")
    slaves = [start_slave(discovery, env) for _ in range(2)]
    master = subprocess.Popen(
        [
            *(*CLOUDY, "master", "127.0.0.1", "0", "--slaves", "2", "--discovery-port", discovery),
            *("--send-for", "1.5s", "--wait-for", "0.3s", "--with-seed", "8"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as on a terminal: a test run in the background inherits SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert master.stderr is not None
    for line in master.stderr:
        if line.startswith("cloudy: SEND"):
            break
    time.sleep(0.5)
    master.send_signal(how)
    _, said = master.communicate(timeout=10)
    if how == signal.SIGINT:
        assert master.returncode == 130
        assert said.startswith("cloudy: interrupted; this master left its slaves"), said
    # what each slave does is the same either way: it finishes the run without the
    # master, prints its result, and waits for a new master (it does not exit)
    outs = []
    for slave, node in slaves:
        assert slave.stdout is not None and slave.stderr is not None
        out = Lines(slave.stdout)
        err = Lines(slave.stderr)
        result = rf"^{re.escape(node)} <(\d+), (\S+)> \(finished without a master\)$"
        outs.append(out.wait_for(result))
        err.wait_for(rf"^cloudy: slave {re.escape(node)}: the master on \S+ has gone; waiting")
        assert slave.poll() is None
    assert len({(m[1], m[2]) for m in outs}) == 1
    count, total = int(outs[0][1]), float(outs[0][2])
    assert total == expected_result(8, count).sum


class Lines:
    """The lines a child writes on a pipe, read by a thread."""

    def __init__(self, pipe: object) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            for line in list(self.lines):
                if (found := re.match(pattern, line)) is not None:
                    return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not among {self.lines}")
            time.sleep(0.05)
