"""``cloudy slave --heart``: a killed slave comes back, a hopeless one is given up, a
stopped or killed heart leaves no child behind; ``cloudy local``'s slaves come back too.

Every process a test starts is ended by its PID afterwards, also when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cloudy import NodeId
from cloudy.backend import simplelocalnet as sl
from cloudy.cli import main
from cloudy.cli.heart import Intensity, describe_status, parse_intensity
from cloudy.cli.local import LocalSlaves
from cloudy.testing import free_port

CLOUDY = [sys.executable, "-m", "cloudy"]
STARTED = re.compile(r"^heart: started slave (nid://\S+), pid (\d+)$", re.M)


# --- arguments and lines ------------------------------------------------------------------


def test_intensities_are_restarts_over_a_duration() -> None:
    assert parse_intensity("5/60") == Intensity(5, 60.0)
    assert parse_intensity("0/1") == Intensity(0, 1.0)
    assert str(Intensity(3, 10.0)) == "3/10"
    for bad in ("5", "x/60", "-1/60", "5/0", "5/soon", "/60"):
        with pytest.raises(ValueError):
            parse_intensity(bad)


def test_statuses_name_the_signal() -> None:
    assert describe_status(1) == "status 1"
    assert describe_status(-9) == "status -9 (signal 9, SIGKILL)"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["slave", "127.0.0.1", "0", "--heart"], "fixed port"),
        (["slave", "127.0.0.1", "8000", "--heart", "--heart-intensity", "5"], "intensity"),
        (["slave", "127.0.0.1", "8000", "--heart", "--heart-intensity", "5/-1"], "duration"),
    ],
)
def test_bad_heart_arguments_give_one_line(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and says in lines[0], lines


# --- a heart and its slave, each an OS process ---------------------------------------------


def state(pid: int) -> str | None:
    """The process's state letter (Z for a zombie), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return None


def alive(pid: int) -> bool:
    return state(pid) not in (None, "Z")


def mentions(pid: int, marker: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker in f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False


def processes_mentioning(marker: str) -> list[int]:
    return [
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and alive(int(p)) and mentions(int(p), marker)
    ]


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and alive(int(entry)):
            with contextlib.suppress(OSError, IndexError), open(f"/proc/{entry}/stat") as f:
                if int(f.read().rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry))
    return found


def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class Heart:
    """``cloudy slave 127.0.0.1 PORT --heart`` with a discovery port and cookie of its own;
    its stderr is read into `lines` as it comes."""

    def __init__(self, port: int, *flags: str) -> None:
        self.port, self.discovery = port, str(free_port(socket.SOCK_DGRAM))
        self.marker = f"--discovery-port {self.discovery}"
        self.env = dict(os.environ, CLOUDY_COOKIE=f"heart-{os.getpid()}-{time.monotonic_ns()}")
        slave = ["slave", "127.0.0.1", str(port), "--discovery-port", self.discovery]
        self.proc = subprocess.Popen(
            [*CLOUDY, *slave, "--heart", *flags],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def child_pids(self) -> list[int]:
        return [int(pid) for _, pid in STARTED.findall(self.text)]

    def child(self, nth: int, timeout: float = 10.0) -> int:
        """The PID of the *nth* child started (1 is the first), once it listens."""
        eventually(lambda: len(self.child_pids()) >= nth, timeout, f"child {nth}\n{self.text}")
        eventually(lambda: listening(self.port), timeout, f"port {self.port}\n{self.text}")
        return self.child_pids()[nth - 1]

    def peers(self) -> list[str]:
        done = subprocess.run(
            [*CLOUDY, "peers", "127.0.0.1", "--discovery-port", self.discovery],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    def end(self) -> None:
        """Kill the heart and every child it started that is still there, by PID."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for pid in [*self.child_pids(), *processes_mentioning(self.marker)]:
            if alive(pid) and mentions(pid, self.marker):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def hearts() -> Iterator[list[Heart]]:
    started: list[Heart] = []
    try:
        yield started
    finally:
        for heart in started:
            heart.end()


def test_a_killed_slave_is_restarted_and_found_again(hearts: list[Heart]) -> None:
    port = free_port()
    hearts.append(heart := Heart(port))
    first = heart.child(1)
    assert heart.peers() == [f"nid://127.0.0.1:{port}:0"]
    os.kill(first, signal.SIGKILL)
    second = heart.child(2, timeout=5)
    assert second != first and not alive(first)
    assert (
        f"heart: slave nid://127.0.0.1:{port}:0 exited with status -9 (signal 9, SIGKILL); "
        "restarting (1st restart in 60 s, at most 5)\n" in heart.text
    )
    assert heart.peers() == [f"nid://127.0.0.1:{port}:0"]
    assert heart.proc.poll() is None


def test_a_slave_that_cannot_start_is_given_up_after_the_intensity(hearts: list[Heart]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        hearts.append(heart := Heart(port, "--heart-intensity", "2/60s"))
        status = heart.proc.wait(timeout=15)
    eventually(lambda: "giving up" in heart.text, 2, "the last line")
    assert status == 1, heart.text
    assert len(heart.child_pids()) == 3
    assert heart.text.count("restarting") == 2
    assert "(2nd restart in 60 s, at most 2)" in heart.text
    assert "address already in use" in heart.text  # the slave's own words
    last = heart.lines[-1]
    assert last == (
        f"heart: slave nid://127.0.0.1:{port}:0 exited with status 1; giving up: more than "
        "2 restarts within 60 s (intensity 2/60)\n"
    )
    assert not any(alive(pid) for pid in heart.child_pids())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_heart_ends_its_slave(hearts: list[Heart], sig: signal.Signals) -> None:
    hearts.append(heart := Heart(free_port()))
    child = heart.child(1)
    heart.proc.send_signal(sig)
    assert heart.proc.wait(timeout=10) == 0, heart.text
    assert not alive(child)
    assert "restarting" not in heart.text


def test_a_killed_heart_takes_its_slave_along(hearts: list[Heart]) -> None:
    hearts.append(heart := Heart(free_port()))
    child = heart.child(1)
    heart.proc.kill()
    heart.proc.wait(timeout=5)
    eventually(lambda: not alive(child), 5, "the slave ends with its heart (PR_SET_PDEATHSIG)")


async def terminate(slaves: list[NodeId]) -> list[NodeId]:
    await sl.terminate_slaves(slaves)
    return slaves


def test_a_slave_that_a_master_terminates_ends_its_heart_too(hearts: list[Heart]) -> None:
    hearts.append(heart := Heart(free_port()))
    child = heart.child(1)
    master = free_port()
    backend = sl.initialize_backend(
        "127.0.0.1",
        master,
        multicast_port=int(heart.discovery),
        cookie=heart.env["CLOUDY_COOKIE"],
    )
    found = sl.start_master(backend, terminate)
    assert found == [NodeId("127.0.0.1", heart.port)]
    assert heart.proc.wait(timeout=10) == 0, heart.text
    assert not alive(child)
    assert "restarting" not in heart.text


# --- cloudy local ---------------------------------------------------------------------------


def test_cloudy_locals_slave_killed_comes_back_and_answers_discovery(tmp_path: Path) -> None:
    out = (tmp_path / "out").open("w")
    slaves = LocalSlaves(2)
    marker = f"--discovery-port {slaves.discovery_port}"

    def write(line: str) -> None:
        print(line, file=out, flush=True)

    try:
        with slaves:
            slaves.start(write, write)
            hearts = [p.pid for p in slaves.procs]
            for port in slaves.slave_ports:
                eventually(lambda p=port: listening(p), 10, f"slave on {port}")  # type: ignore[misc]
            eventually(lambda: all(len(children(h)) == 1 for h in hearts), 5, "one child each")
            first = children(hearts[0])[0]
            os.kill(first, signal.SIGKILL)
            eventually(lambda: children(hearts[0]) not in ([], [first]), 5, "a new child")
            port = slaves.slave_ports[0]
            eventually(lambda: listening(port), 5, f"slave on {port} again")
            env = dict(os.environ, CLOUDY_COOKIE=slaves.cookie)
            done = subprocess.run(
                [*CLOUDY, "peers", "127.0.0.1", "--discovery-port", str(slaves.discovery_port)],
                env=env,
                capture_output=True,
                text=True,
                timeout=10,
            )
            assert done.returncode == 0, done.stderr
            assert sorted(done.stdout.splitlines()) == sorted(
                f"nid://127.0.0.1:{p}:0" for p in slaves.slave_ports
            )
            kids = [pid for h in hearts for pid in children(h)]
        # leaving LocalSlaves ends each heart, and each heart its slave
        assert all(p.poll() == 0 for p in slaves.procs), [p.returncode for p in slaves.procs]
        assert not any(alive(pid) for pid in kids)
    finally:
        out.close()
        for pid in processes_mentioning(marker):
            os.kill(pid, signal.SIGKILL)
