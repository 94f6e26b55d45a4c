"""The ``cloudy`` command: arguments, verify, and whole runs in separate OS processes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import processes_mentioning

from cloudy.cli import main
from cloudy.cli.values import parse_duration
from cloudy.ring import expected_result
from cloudy.testing import free_port

RESULT_LINE = re.compile(r"^(nid://\S+) <(\d+), (\S+)>$", re.M)
CLOUDY = [sys.executable, "-m", "cloudy"]


# --- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2s", 2.0), ("1500ms", 1.5), ("0.5", 0.5), ("3", 3.0), ("250us", 0.00025), ("1m", 60.0)],
)
def test_durations_accept_seconds_milliseconds_and_plain_numbers(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-2s", "two", "", "2 parsecs", "1e", "--1"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "required"),
        (["bogus"], "invalid choice"),
        (["local", "--send-for", "-2s"], "not a duration"),
        (["local", "--wait-for=-1"], "not a duration"),
        (["local", "--send-for", "soon"], "not a duration"),
        (["local", "--send-for", "0"], "longer than zero"),
        (["local", "--slaves", "0"], "at least 1"),
        (["local", "--slaves", "-3"], "at least 1"),
        (["local", "--slaves", "abc"], "not a whole number: 'abc'"),
        (["local", "--tokens", "0"], "tokens must be a whole number from 1"),
        (["local", "--model", "bogus"], "invalid choice"),
        (["master", "127.0.0.1", "99999"], "not a port"),
        (["master", "127.0.0.1", "8000", "2000000", "-5", "0"], "microseconds"),
        (["master", "127.0.0.1", "8000", "2000000", "1000000", "zero"], "not an integer seed"),
        (["master", "127.0.0.1", "8000", "2000000", "--send-for", "1s"], "given twice"),
        (["verify", "--with-seed", "0", "many"], "not a count"),
        (["slave", "127.0.0.1"], "required"),
    ],
)
def test_bad_arguments_give_one_line_and_a_nonzero_exit(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("cloudy: ") and says in lines[0]


def test_bad_arguments_never_show_a_traceback_from_the_command_line() -> None:
    done = subprocess.run(
        [*CLOUDY, "local", "--send-for", "-2s"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_verify_prints_the_expected_count_and_sum(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--with-seed", "3", "1000"]) == 0
    assert capsys.readouterr().out == f"{expected_result(3, 1000)}\n"
    assert main(["verify", "2", "--with-seed", "0x10"]) == 0
    assert capsys.readouterr().out == f"{expected_result(16, 2)}\n"


# --- whole runs, every node its own OS process ----------------------------------------


@pytest.fixture
def local_run() -> Iterator[tuple[list[str], str]]:
    """The start of a `cloudy local` command with a discovery port of its own, and that port.

    Whatever the test does, every process started with that port is ended afterwards.
    """
    marker = str(free_port(socket.SOCK_DGRAM))
    try:
        yield [*CLOUDY, "local", "--discovery-port", marker], marker
    finally:
        for pid in processes_mentioning(f"--discovery-port {marker}"):
            os.kill(pid, signal.SIGKILL)


def wait_until_gone(marker: str, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_mentioning(f"--discovery-port {marker}")) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    return left


def test_cloudy_local_runs_four_slaves_that_agree_and_leaves_nothing_behind(
    local_run: tuple[list[str], str],
) -> None:
    command, marker = local_run
    done = subprocess.run(
        [*command, "--slaves", "4", "--send-for", "0.5s", "--wait-for", "300ms", "--json"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["agree"] is True
    assert len(report["slaves"]) == 4
    assert report["count"] > 0
    assert report["sum"] == expected_result(0, report["count"]).sum
    assert (report["send_for"], report["wait_for"], report["seed"]) == (0.5, 0.3, 0)
    assert report["msgs_per_s"] > 0
    # each slave printed its own line (sent to stderr under --json, to keep stdout JSON)
    printed = RESULT_LINE.findall(done.stderr)
    assert sorted(node for node, _, _ in printed) == sorted(s["node"] for s in report["slaves"])
    assert {(int(c), float(s)) for _, c, s in printed} == {(report["count"], report["sum"])}
    assert wait_until_gone(marker, timeout=0) == []


def test_cloudy_local_names_each_slave_once_with_its_result_then_the_verdict_and_rate(
    local_run: tuple[list[str], str],
) -> None:
    command, _ = local_run
    done = subprocess.run(
        [*command, "--slaves", "2", "--send-for", "0.3", "--wait-for", "0.2", "--with-seed", "5"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "all 2 slaves agree" in done.stdout
    assert "msgs/s" in done.stdout
    results = RESULT_LINE.findall(done.stdout)  # the slaves' own lines
    assert len(results) == 2
    for node, _, _ in results:  # and no table repeats them: all agreed, none lost
        assert done.stdout.count(node) == 1 and node not in done.stderr, done.stdout
    count = int(re.search(r"agree: <(\d+),", done.stdout).group(1))  # type: ignore[union-attr]
    assert f"<{count}, {expected_result(5, count).sum!r}>" in done.stdout
    # the hearts starting their slaves are not news (-v shows them); nothing restarted
    assert "heart:" not in done.stderr, done.stderr


def test_cloudy_local_verbose_shows_each_heart_starting_its_slave(
    local_run: tuple[list[str], str],
) -> None:
    command, _ = local_run
    done = subprocess.run(
        [*command, "-v", "--slaves", "2", "--send-for", "0.2", "--wait-for", "0.1"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    started = re.findall(r"^heart: started slave (nid://\S+), pid \d+$", done.stderr, re.M)
    assert sorted(started) == sorted(m[0] for m in RESULT_LINE.findall(done.stdout)), done.stderr


def test_a_slave_that_fails_to_start_ends_cloudy_local_with_one_line_and_no_leftovers(
    local_run: tuple[list[str], str], tmp_path: Path
) -> None:
    command, marker = local_run
    # every `cloudy slave` started by this run exits at once, as one would with a broken install
    (tmp_path / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if 'slave' in sys.argv and os.environ.get('BREAK_CLOUDY_SLAVES'):\n"
        "    print('cannot start: broken on purpose', file=sys.stderr, flush=True)\n"
        "    os._exit(1)\n"
    )
    env = dict(os.environ, BREAK_CLOUDY_SLAVES="1", PYTHONPATH=str(tmp_path))
    done = subprocess.run(
        [*command, "--slaves", "2", "--send-for", "0.3s", "--wait-for", "0.2s"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1
    assert "cannot start: broken on purpose" in done.stderr  # the slave's own words
    assert "cloudy: a slave exited while starting (status 1)" in done.stderr
    assert "Traceback" not in done.stderr
    assert wait_until_gone(marker) == []


def test_ctrl_c_on_cloudy_local_ends_every_slave(local_run: tuple[list[str], str]) -> None:
    command, marker = local_run
    run = subprocess.Popen(
        [*command, "--slaves", "2", "--send-for", "30s", "--wait-for", "1s"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a test run started in the background inherits SIGINT
        # ignored, and the child would then ignore our Ctrl-C
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    under_way = threading.Event()
    lines: list[str] = []

    def drain() -> None:  # read all of stderr, so that a full pipe never blocks the run
        assert run.stderr is not None
        for line in run.stderr:
            lines.append(line)
            if "SEND" in line:
                under_way.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert under_way.wait(timeout=60), "".join(lines)
        # cloudy local, and per slave its heart and the slave node
        assert len(processes_mentioning(f"--discovery-port {marker}")) == 5
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=30) != 0, "".join(lines)
        assert wait_until_gone(marker) == []
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_seeds_way_four_cloudy_slaves_and_one_cloudy_master() -> None:
    discovery = str(free_port(socket.SOCK_DGRAM))
    env = dict(os.environ, CLOUDY_COOKIE=f"seeds-way-{discovery}")
    slaves: list[subprocess.Popen[str]] = []
    try:
        for _ in range(4):
            slaves.append(
                subprocess.Popen(
                    [
                        *CLOUDY,
                        "slave",
                        "127.0.0.1",
                        str(free_tcp_port()),
                        *("--discovery-port", discovery),
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )
        master = subprocess.run(
            [
                *(*CLOUDY, "master", "127.0.0.1", str(free_tcp_port()), "500000", "300000", "9"),
                *("--slaves", "4", "--discovery-port", discovery, "--json"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert master.returncode == 0, master.stderr
        report = json.loads(master.stdout)
        assert report["agree"] and report["seed"] == 9
        assert report["sum"] == expected_result(9, report["count"]).sum
        for slave in slaves:  # the master ends them; each printed its own line
            out, _ = slave.communicate(timeout=30)
            assert slave.returncode == 0
            (line,) = RESULT_LINE.findall(out)
            assert (int(line[1]), float(line[2])) == (report["count"], report["sum"])
    finally:
        for slave in slaves:
            if slave.poll() is None:
                slave.kill()
                slave.wait()


def test_version_says_which_cloudy_this_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("cloudy 0.")
