"""The experiment's slaves as child OS processes on this machine, for ``cloudy local``.

`LocalSlaves` picks free ports, a discovery port and a cookie of its own (two runs on
one machine never mix), starts one ``cloudy slave`` child process per slave, and ends
every one of them by its PID when it is left — normally, on failure, or on Ctrl-C:
first a grace period, then SIGTERM, then SIGKILL. Each child also watches its stdin
(`exit_with_stdin`), so that it ends by itself when its parent has gone.

Each slave runs under ``--heart`` (`cloudy.heart`): the PID `LocalSlaves` holds is a small
parent process that restarts the slave node, on the same host and port, if it dies during
the run, and ends it when it is itself ended (or when its stdin closes). A slave that a
master terminated exits normally, and its heart with it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import TextIO

from .aio import free_port
from .ring.master import ExperimentError

__all__ = ["SLAVE_EXIT_GRACE", "LocalSlaves", "cloudy_command", "exit_with_stdin", "wait_or_kill"]

# How long `cloudy local` gives its slaves to exit by themselves before killing them.
SLAVE_EXIT_GRACE = 5.0


class LocalSlaves:
    """*count* ``cloudy slave`` child processes on *host*, with ports and a cookie of their own.

    Use it as a context manager: `start` them inside it; leaving it ends them all.
    """

    def __init__(
        self,
        count: int,
        discovery_port: int | None = None,
        host: str = "127.0.0.1",
        detect: float | None = None,
    ):
        self.host = host
        self.detect = detect
        self.cookie = secrets.token_urlsafe(24)
        self.discovery_port = discovery_port or free_port(socket.SOCK_DGRAM)
        ports = [free_port(socket.SOCK_STREAM) for _ in range(count + 1)]
        # one port more than slaves: the master's
        self.master_port, self.slave_ports = ports[0], ports[1:]
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> LocalSlaves:
        return self

    def __exit__(
        self,
        tp: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        wait_or_kill(self.procs, 0.0)

    def start(self, out: TextIO) -> None:
        """Start every slave, its output to *out*; Ctrl-C reaches this process only."""
        env = dict(os.environ, CLOUDY_COOKIE=self.cookie)
        out.flush()
        for port in self.slave_ports:
            self.procs.append(
                subprocess.Popen(
                    [
                        *cloudy_command(),
                        "slave",
                        self.host,
                        str(port),
                        "--discovery-port",
                        str(self.discovery_port),
                        "--exit-with-stdin",
                        "--heart",
                        *(("--detect", f"{self.detect}s") if self.detect else ()),
                    ],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=out,
                    # Ctrl-C reaches us only; we end the slaves ourselves
                    start_new_session=True,
                )
            )

    def check(self) -> None:
        """Raise `ExperimentError` if a slave has already exited."""
        for proc in self.procs:
            if proc.poll() is not None:
                raise ExperimentError(
                    f"a slave exited while starting (status {proc.returncode}); see above"
                )

    def finish(self, grace: float = SLAVE_EXIT_GRACE) -> None:
        """Give the slaves *grace* seconds to exit by themselves, then end them."""
        wait_or_kill(self.procs, grace)


def cloudy_command() -> list[str]:
    """The command line that runs ``cloudy`` with this Python."""
    return [sys.executable, "-m", "cloudy.cli"]


def wait_or_kill(procs: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    """Give *procs* *grace* seconds to exit, then SIGTERM, then SIGKILL; reap them all."""
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(deadline - time.monotonic(), 0.0))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.poll() is None]
        if not alive:
            break
        for proc in alive:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        for proc in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2.0)
    for proc in procs:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()


def exit_with_stdin() -> None:
    """End this process when stdin reaches EOF: its parent (`cloudy local`) has gone."""

    def watch() -> None:
        # os.read, not sys.stdin: a buffered reader's lock held by this daemon thread
        # would abort the interpreter at a normal exit
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-stdin", daemon=True).start()
