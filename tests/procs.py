"""Helpers for tests that start OS processes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from cloudy.backend.health import health
from cloudy.testing import free_port

__all__ = ["CLOUDY", "as_on_a_terminal", "ended_by_pid", "own_discovery_port"]
__all__ += ["processes_mentioning", "run_local", "wait_listening", "wait_serving"]

CLOUDY = [sys.executable, "-m", "cloudy"]


def as_on_a_terminal(env: dict[str, str]) -> dict[str, str]:
    """*env* without what would override a pseudo-terminal's own size and colours, as
    on a person's terminal (pytest-xdist's workers set COLUMNS=80 and LINES=24, which
    rich obeys over the pty's size)."""
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    return {k: v for k, v in env.items() if not k.startswith(("TTY_", "FORCE_"))}


def processes_mentioning(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains *marker*."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    continue  # a zombie has ended; its parent has yet to reap it
        except OSError:
            continue
        if marker in cmdline:
            found.append(int(entry))
    return found


@contextlib.contextmanager
def own_discovery_port() -> Iterator[str]:
    """A free UDP port for a test's own discovery group; every process whose command
    line names it (``--discovery-port PORT``) is woken, in case a test froze it, and
    killed by its PID afterwards."""
    port = str(free_port(socket.SOCK_DGRAM))
    try:
        yield port
    finally:
        for pid in processes_mentioning(f"--discovery-port {port}"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def ended_by_pid() -> Iterator[list[subprocess.Popen[Any]]]:
    """A list to put the processes a test starts in; each is killed by its PID
    afterwards (if still running) and reaped, whatever happened."""
    started: list[subprocess.Popen[Any]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def run_local(command: list[str], marker: str, *flags: str) -> subprocess.CompletedProcess[str]:
    """Run a `cloudy local` *command* (from the ``local`` fixture) with *flags*; check
    that every process it started (*marker* in its command line) has ended."""
    done = subprocess.run([*command, *flags], capture_output=True, text=True, timeout=60)
    deadline = time.monotonic() + 5
    while processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_mentioning(marker) == [], "left behind"
    return done


def wait_listening(port: int, timeout: float = 20.0) -> None:
    """Until something accepts TCP connections on 127.0.0.1:*port*."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def wait_serving(port: int, cookie: str, timeout: float = 20.0) -> None:
    """Until the slave on 127.0.0.1:*port* answers as ``cloudy health`` asks it to. A
    slave's node listens before its discovery daemon runs and its controller is
    registered; only then can a master's discovery find it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        said = io.StringIO()  # (why it did not answer yet: not a failure)
        if asyncio.run(health("127.0.0.1", port, timeout=1.0, out=said, cookie=cookie)) == 0:
            return
        time.sleep(0.05)
    raise TimeoutError(f"no slave with this cookie serves on {port}")
