"""What a person sees: the ``cloudy`` command's help, its errors, ``--cookie``, ``--json`` on
failure, ``cloudy verify`` on a terminal and Ctrl-C, and the examples' and benchmarks'
errors — each by running the real command in its own OS process."""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import ended_by_pid, processes_mentioning

from cloudy.cli.args import build_parser
from cloudy.cli.help import COMMANDS
from cloudy.ring import expected_result
from cloudy.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
CLOUDY = [sys.executable, "-m", "cloudy"]
NODE_COMMANDS = ("slave", "master", "local", "peers", "doctor")
NOT_HERE = "10.255.255.1"  # an address of no interface of this machine: binding fails


def cloudy(*args: str, timeout: float = 60, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        [*CLOUDY, *args], capture_output=True, text=True, timeout=timeout, **kw
    )


def no_cookie_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "CLOUDY_COOKIE"}


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts; each is ended by its PID afterwards, whatever happened."""
    with ended_by_pid() as started:
        yield started


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that something listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def start_slave(
    children: list[subprocess.Popen[str]], discovery: int, *args: str, **kw: object
) -> tuple[subprocess.Popen[str], int]:
    """``cloudy slave 127.0.0.1 PORT --discovery-port D ARGS`` once it listens, and PORT."""
    port = free_port()
    slave: subprocess.Popen[str] = subprocess.Popen(  # type: ignore[call-overload]
        [*CLOUDY, "slave", "127.0.0.1", str(port), "--discovery-port", str(discovery), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )
    children.append(slave)
    deadline = time.monotonic() + 30
    while not _listening(port):
        assert slave.poll() is None, slave.communicate()[1]
        assert time.monotonic() < deadline, "the slave did not start"
        time.sleep(0.05)
    return slave, port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- help -------------------------------------------------------------------------------


def test_cloudy_help_lists_every_command_with_one_line() -> None:
    done = cloudy("--help")
    assert done.returncode == 0
    for name, text in COMMANDS.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(text.line)}$", done.stdout, re.M), name


def option_entries(help_text: str) -> dict[str, str]:
    """Each option of a help text (its first flag) and the help written for it."""
    entries: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        found = re.match(r"^  (-[-\w]+)(?:,? [^ ]+)*?(?:  +(.*))?$", line)
        if found:
            current = found.group(1)
            entries[current] = found.group(2) or ""
        elif current and line.startswith(" " * 10):
            entries[current] += " " + line.strip()
        else:
            current = None
    return entries


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_a_description_option_help_with_defaults_and_examples(
    name: str,
) -> None:
    done = cloudy(name, "--help")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    flat = " ".join(out.split())
    assert " ".join(COMMANDS[name].description.split()) in flat
    examples = out.split("examples:\n", 1)[1].splitlines()
    assert examples and all(e.startswith(f"  cloudy {name} ") for e in examples), examples
    entries = option_entries(out)
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = commands.choices[name]
    shown = [a for a in parser._actions if a.option_strings and a.help != "==SUPPRESS=="]
    assert {a.option_strings[0] for a in shown} <= set(entries), entries
    for action in shown:
        text = entries[action.option_strings[0]]
        assert text.strip(), f"{action.option_strings[0]} has no help"
        if action.default not in (None, False, "==SUPPRESS=="):
            assert "default" in text, f"{action.option_strings[0]}: {text}"
    if name in NODE_COMMANDS:
        assert ("a random one" if name == "local" else "$CLOUDY_COOKIE") in entries["--cookie"]


# --- usage errors point at the command's help ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "see"),
    [
        (["local", "--slaves", "0"], "cloudy local --help"),
        (["master", "127.0.0.1", "8000", "2000000", "--send-for", "1s"], "cloudy master --help"),
        (["slave", "127.0.0.1"], "cloudy slave --help"),
        (["verify", "many"], "cloudy verify --help"),
        (["doctor", "127.0.0.1", "--cookie="], "cloudy doctor --help"),
        (["bogus"], "cloudy --help"),
    ],
)
def test_a_usage_error_points_at_the_help_of_its_command(argv: list[str], see: str) -> None:
    done = cloudy(*argv)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("cloudy: ") and line.endswith(f"(see {see})"), line


# --- --json on failure -----------------------------------------------------------------


def test_a_failed_master_with_json_prints_a_json_failure(busy_port: int) -> None:
    done = cloudy("master", "127.0.0.1", str(busy_port), "--json")
    assert done.returncode == 1
    failure = json.loads(done.stdout)
    assert failure["ok"] is False and failure["command"] == "master"
    assert f"port {busy_port} is in use" in failure["error"]
    assert done.stderr == f"cloudy: {failure['error']}\n"


def test_a_usage_error_with_json_prints_a_json_failure_too() -> None:
    done = cloudy("local", "--json", "--slaves", "0")
    assert done.returncode == 2
    failure = json.loads(done.stdout)
    assert failure == {
        "ok": False,
        "error": failure["error"],
        "command": "local",
        "exit_status": 2,
    }
    assert "at least 1" in failure["error"]


# --- addresses and ports: one line that says what to do -----------------------------------


def test_an_address_not_of_this_machine_says_so_and_what_to_use() -> None:
    done = cloudy("slave", NOT_HERE, "0")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert f"{NOT_HERE} is not an address of this machine" in line
    assert "127.0.0.1" in line and "Errno" not in line


def test_a_busy_port_says_it_is_in_use(busy_port: int) -> None:
    done = cloudy("slave", "127.0.0.1", str(busy_port))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"cloudy: cannot listen on 127.0.0.1:{busy_port}: ")
    assert f"port {busy_port} is in use" in line and "Errno" not in line


def test_a_host_that_does_not_resolve_says_so_and_what_to_use() -> None:
    done = cloudy("slave", "no-such-host.invalid", "0")
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "cannot resolve 'no-such-host.invalid'" in line and "127.0.0.1" in line


# --- --cookie ------------------------------------------------------------------------------


def test_cookie_flag_wins_over_the_environment(children: list[subprocess.Popen[str]]) -> None:
    discovery = free_port(socket.SOCK_DGRAM)
    flag, env_cookie = f"flag-{discovery}", f"env-{discovery}"
    env = dict(os.environ, CLOUDY_COOKIE=env_cookie)
    start_slave(children, discovery, "--cookie", flag, env=env)
    where = ("127.0.0.1", "--discovery-port", str(discovery))
    found = cloudy("peers", *where, "--cookie", flag, env=env)
    assert found.returncode == 0, found.stderr
    assert len(found.stdout.split()) == 1  # the slave
    # the environment's cookie alone is not the slave's
    missed = cloudy("peers", *where, env=env)
    assert missed.returncode == 1 and missed.stdout == ""
    assert "cloudy: 1 node(s) answered with a different cookie" in missed.stderr


def test_a_slave_under_heart_passes_its_cookie_on(children: list[subprocess.Popen[str]]) -> None:
    discovery = free_port(socket.SOCK_DGRAM)
    cookie = f"heart-{discovery}"
    try:
        start_slave(children, discovery, "--heart", "--cookie", cookie, env=no_cookie_env())
        node = [
            pid
            for pid in processes_mentioning(f"--discovery-port {discovery}")
            if "--exit-with-stdin" in Path(f"/proc/{pid}/cmdline").read_text()
        ]
        assert len(node) == 1  # the node under its heart: the cookie is not on its command line
        assert cookie not in Path(f"/proc/{node[0]}/cmdline").read_text()
        found = cloudy("peers", "127.0.0.1", "--discovery-port", str(discovery), "--cookie", cookie)
        assert found.returncode == 0, found.stderr
    finally:
        for pid in processes_mentioning(f"--discovery-port {discovery}"):
            os.kill(pid, signal.SIGKILL)


def test_cloudy_local_runs_with_the_cookie_given(children: list[subprocess.Popen[str]]) -> None:
    discovery = free_port(socket.SOCK_DGRAM)
    cookie = f"local-{discovery}"
    run: subprocess.Popen[str] = subprocess.Popen(
        [
            *(*CLOUDY, "local", "--slaves", "2", "--send-for", "3s", "--wait-for", "0.2s"),
            *("--discovery-port", str(discovery), "--cookie", cookie, "--json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    children.append(run)
    sending, err_lines = threading.Event(), []

    def drain() -> None:  # all of stderr, so that a full pipe never blocks the run
        assert run.stderr is not None
        for line in run.stderr:
            err_lines.append(line)
            if line.startswith("cloudy: SEND"):
                sending.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert sending.wait(60), "".join(err_lines)
        # while it sends, its nodes answer discovery with our cookie (on a loaded
        # machine a node busy sending may answer after the default second)
        found = cloudy(
            *("peers", "127.0.0.1", "--discovery-port", str(discovery), "--cookie", cookie),
            *("--wait", "2.5s"),
        )
        assert run.stdout is not None
        out = run.stdout.read()
        run.wait(60)
        reader.join(10)
    finally:
        for pid in processes_mentioning(f"--discovery-port {discovery}"):
            os.kill(pid, signal.SIGKILL)
    assert run.returncode == 0, "".join(err_lines)
    slaves = {s["node"] for s in json.loads(out)["slaves"]}
    assert slaves <= set(found.stdout.split()), found


# --- doctor and a node with another cookie --------------------------------------------------


def test_doctor_says_a_node_with_a_different_cookie_answered(
    children: list[subprocess.Popen[str]],
) -> None:
    discovery = free_port(socket.SOCK_DGRAM)
    start_slave(children, discovery, "--cookie", f"theirs-{discovery}")
    where = ("127.0.0.1", "--discovery-port", str(discovery))
    other = cloudy("doctor", *where, "--cookie", f"ours-{discovery}")
    assert "(0 other node(s) with our cookie answer)" in other.stdout
    assert "warn  1 node(s) answered with a different cookie: " in other.stdout
    same = cloudy("doctor", *where, "--cookie", f"theirs-{discovery}")
    assert "(1 other node(s) with our cookie answer)" in same.stdout
    assert "different cookie" not in same.stdout
    assert "ok    the cookie is given as an argument (--cookie)" in same.stdout


# --- the refusal line says who and why ----------------------------------------------------


def test_a_refused_connection_is_logged_with_who_and_why(
    children: list[subprocess.Popen[str]],
) -> None:
    discovery = free_port(socket.SOCK_DGRAM)
    slave, port = start_slave(children, discovery, "--cookie", f"one-{discovery}")
    asked = cloudy(
        *("peers", "127.0.0.1", "--discovery-port", str(discovery)),
        *("--peers", f"127.0.0.1:{port}", "--cookie", f"two-{discovery}"),
    )
    ours = next(x for x in asked.stderr.splitlines() if x.startswith("refusing"))
    assert ours == (
        f"refusing 127.0.0.1:{port} over a local socket "
        f"(we dialled nid://127.0.0.1:{port}:0): "
        "authentication failed: the peer does not share our cookie"
    )
    slave.terminate()
    _, err = slave.communicate(timeout=30)
    theirs = next(x for x in err.splitlines() if x.startswith("refusing"))
    assert re.fullmatch(
        # (it dialled the slave's local socket: the caller has no address until proven)
        r"refusing a process on this machine "
        r"\(it called us as nid://127\.0\.0\.1:\d+:0, unproven\): "
        r"authentication failed: the peer does not share our cookie",
        theirs,
    ), theirs
    assert "()" not in asked.stderr + err


# --- cloudy verify -------------------------------------------------------------------------


def test_verify_piped_prints_the_result_only() -> None:
    done = cloudy("verify", "--with-seed", "3", "1500000")
    assert done.returncode == 0
    assert done.stdout == f"{expected_result(3, 1_500_000)}\n"
    assert done.stderr == ""


def test_the_progress_reported_does_not_change_the_sum() -> None:
    seen: list[int] = []
    assert expected_result(7, 200_001, seen.append) == expected_result(7, 200_001)
    assert seen == [65536, 131072, 196608, 200_001]


def on_a_terminal(*args: str) -> tuple[subprocess.Popen[bytes], int]:
    """``cloudy ARGS`` with stderr on a pseudo-terminal; the process and the pty's end."""
    ours, theirs = pty.openpty()
    proc = subprocess.Popen(
        [*CLOUDY, *args],
        stdout=subprocess.PIPE,
        stderr=theirs,
        # as from a terminal: Ctrl-C is not ignored even if the test run's SIGINT is
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(theirs)
    return proc, ours


def read_until(fd: int, pattern: bytes, timeout: float) -> bytes:
    """What *fd* gives until *pattern* appears (or it ends, or *timeout* passes)."""
    got, deadline = b"", time.monotonic() + timeout
    while pattern not in got and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            got += chunk
    return got


def test_verify_on_a_terminal_shows_progress_and_ends_with_the_result() -> None:
    proc, pty_end = on_a_terminal("verify", "--with-seed", "2", "1500000")
    try:
        shown = read_until(pty_end, b"\x1b[?25h", 60)  # until the bar ends (the cursor is back)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(pty_end)
    assert proc.returncode == 0
    assert out.decode() == f"{expected_result(2, 1_500_000)}\n"
    assert re.search(rb"verify .*\d+/1500000", shown), shown[-300:]


def test_ctrl_c_ends_a_long_verify_with_one_line() -> None:
    proc, pty_end = on_a_terminal("verify", "10000000000")
    try:
        assert b"/10000000000" in read_until(pty_end, b"/10000000000", 30)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        shown = read_until(pty_end, b"no result", 5).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(pty_end)
    assert proc.stdout is not None and proc.stdout.read() == b""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown).replace("\r", "\n")
    last = plain.rstrip().splitlines()[-1]
    assert re.fullmatch(
        r"cloudy: verify interrupted after [\d,]+ of 10,000,000,000 messages; no result", last
    ), repr(last)
    assert "\x1b[?25h" in shown  # the bar is gone and the cursor is back
    assert "Traceback" not in shown


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_ctrl_c_on_a_piped_verify_is_one_line() -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert cloudy("verify", "1").returncode == 0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    startup = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    proc = subprocess.Popen(
        [*CLOUDY, "verify", "10000000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Ctrl-C once it is summing: when it has used more CPU than starting takes
        deadline = time.monotonic() + 30
        while cpu_seconds(proc.pid) < startup + 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and out == ""
    (line,) = err.splitlines()
    assert line.startswith("cloudy: verify interrupted after "), line


# --- the examples --------------------------------------------------------------------------


def example(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, env=env, cwd=ROOT
    )


def assert_one_clear_line(done: subprocess.CompletedProcess[str], says: str) -> None:
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert re.match(r"^(two_nodes|minimal)\.py: ", last) and says in last, done.stderr


def test_an_example_asking_a_dead_node_says_so_in_one_line() -> None:
    dead = free_port()
    env = dict(os.environ, CLOUDY_COOKIE=f"dead-{dead}")
    done = example(
        "examples/two_nodes.py", "spawn", "127.0.0.1", "0", f"nid://127.0.0.1:{dead}:0", env=env
    )
    assert_one_clear_line(done, f"nid://127.0.0.1:{dead}:0 is unreachable: connection refused")
    assert len(done.stderr.splitlines()) == 1


def test_an_example_with_a_wrong_cookie_says_so_in_one_line(
    children: list[subprocess.Popen[str]],
) -> None:
    port = free_port()
    server: subprocess.Popen[str] = subprocess.Popen(
        [sys.executable, "examples/two_nodes.py", "serve", "127.0.0.1", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, CLOUDY_COOKIE=f"server-{port}"),
    )
    children.append(server)
    assert server.stdout is not None and "serving on" in server.stdout.readline()
    done = example(
        *("examples/two_nodes.py", "spawn", "127.0.0.1", "0", f"nid://127.0.0.1:{port}:0"),
        env=dict(os.environ, CLOUDY_COOKIE=f"client-{port}"),
    )
    assert_one_clear_line(done, "the peer does not share our cookie")


@pytest.mark.parametrize(
    "argv", [["examples/two_nodes.py", "serve"], ["examples/minimal.py", "slave"]]
)
def test_an_example_on_a_busy_port_says_so_in_one_line(argv: list[str], busy_port: int) -> None:
    env = dict(os.environ, CLOUDY_COOKIE=f"busy-{busy_port}")
    done = example(*argv, "127.0.0.1", str(busy_port), env=env)
    assert_one_clear_line(done, f"port {busy_port} is in use")
    assert len(done.stderr.splitlines()) == 1


# --- the benchmarks ------------------------------------------------------------------------


def benchmark(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT / "benchmarks",
        env=env,
    )


def test_the_ring_benchmark_shows_why_cloudy_local_failed(tmp_path: Path) -> None:
    # as under a Python that lacks cloudy's dependencies
    (tmp_path / "msgspec.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'msgspec'\")\n"
    )
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    done = benchmark("ring.py", "--send-for", "0.2s", env=env)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0].startswith("ring.py: cloudy local failed (exit status 1")
    assert "No module named 'msgspec'" in lines[-1]


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["ring.py", "--slaves", "0"], "--slaves: not a whole number from 1: '0'"),
        (["ring.py", "--slaves", "abc"], "--slaves: not a whole number from 1: 'abc'"),
        (["ring.py", "--send-for", "-1"], "--send-for: not a duration: '-1'"),
        (["models.py", "--window", "0"], "--window: not a whole number from 1 to 16777216"),
        (["models.py", "--slaves", "0"], "--slaves: not a whole number from 1: '0'"),
        (["models.py", "--runs", "0"], "--runs: not a whole number from 1: '0'"),
        (["models.py", "--send-for", "-1"], "--send-for: not a duration: '-1'"),
        (["models.py", "--timeout", "-1"], "--timeout: not a number of seconds above zero"),
    ],
)
def test_a_bad_benchmark_argument_is_one_line(argv: list[str], says: str) -> None:
    done = benchmark(*argv)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"{argv[0]}: ") and says in line, line
    assert line.endswith(f"(see {argv[0]} --help)")
