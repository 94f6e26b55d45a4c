"""The experiment's slaves as child OS processes on this machine, for ``cloudy local``.

`LocalSlaves` picks free ports, a discovery port and a cookie of its own (two runs on
one machine never mix), starts one ``cloudy slave`` child process per slave, and ends
every one of them by its PID when it is left — normally, on failure, or on Ctrl-C:
first a grace period, then SIGTERM, then SIGKILL. Each child also watches its stdin
(`exit_with_stdin`), so that it ends by itself when its parent has gone.

Each slave runs under ``--heart`` (`cloudy.cli.heart`): the PID `LocalSlaves` holds is a small
parent process that restarts the slave node, on the same host and port, if it dies during
the run, and ends it when it is itself ended (or when its stdin closes). A slave that a
master terminated exits normally, and its heart with it.

A slave's output (stdout and stderr) is relayed through this process, line by line (a
thread per pipe), to where the caller says — `cloudy local` passes its display's
sinks, so that no child writes across the live display — and so that `outcomes` can
tell what each slave printed: its result, or that it has none. The slaves run with
``--quiet``: they do not say that they listen, are taken or end; their results and
errors are said, and their hearts' lines but the first ``heart: started`` of each
(the final screen names each slave where its result is), unless *verbose*.
`start_master` runs the master as a child OS process too (for ``--kill-master-at``: a
master that can be killed without killing ``cloudy local``); `node_pid` finds a slave's
node process under its heart (to kill or freeze the node, not the heart).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import IO

import msgspec

from ..identity import NodeId
from ..ring import ExperimentError, Params, Report, RingResult
from ..testing.ports import free_port
from .heart import die_with_parent

__all__ = [
    "SLAVE_EXIT_GRACE",
    "LocalSlaves",
    "SlaveOutcome",
    "cloudy_command",
    "exit_with_stdin",
    "wait_or_kill",
]

# How long `cloudy local` gives its slaves to exit by themselves before killing them.
SLAVE_EXIT_GRACE = 5.0


# A slave's result line (`RingResult` printed after its node id), and the words of a
# slave that has none.
RESULT_LINE = re.compile(r"^(nid://\S+) <(\d+), (\S+)>( \(finished without a master\))?$")
NO_RESULT = "has no agreed result"


@dataclass(frozen=True)
class SlaveOutcome:
    """What a slave printed last: its result, or why it has none (*line*); None: nothing."""

    node: NodeId
    line: str | None = None
    result: RingResult | None = None


Lines = Callable[[str], None]
"""Where a child's lines go, one call per line (without its newline)."""


class _Relay:
    """Every line a child writes on *pipe*, kept, and passed on to *out* as it comes."""

    def __init__(
        self,
        pipe: IO[bytes],
        out: Lines | None,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.pipe, self.out, self.on_line = pipe, out, on_line
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for raw in iter(self.pipe.readline, b""):
                line = raw.decode(errors="replace")
                if self.out is not None:
                    with contextlib.suppress(OSError, ValueError):  # read on whatever happens
                        self.out(line.rstrip("\n"))
                self.lines.append(line.rstrip("\n"))
                if self.on_line is not None:
                    self.on_line(line)
        with contextlib.suppress(OSError):
            self.pipe.close()


def _but_first_start(out: Lines) -> Lines:
    """*out*, but for the heart's first ``heart: started ...`` line (kept in the relay's
    lines all the same); a restart's is passed on."""
    started = False

    def relay(line: str) -> None:
        nonlocal started
        if not started and line.startswith("heart: started "):
            started = True
            return
        out(line)

    return relay


class LocalSlaves:
    """*count* ``cloudy slave`` child processes on *host*, with ports and a cookie of their own.

    The cookie is *cookie* if given (``--cookie``), else a random one. Use it as a
    context manager: `start` them inside it; leaving it ends them all (and
    the master, if `start_master` started one).
    """

    def __init__(
        self,
        count: int,
        discovery_port: int | None = None,
        host: str = "127.0.0.1",
        detect: float | None = None,
        cookie: str | None = None,
        verbose: bool = False,
    ):
        self.host = host
        self.verbose = verbose
        self.detect = detect
        self.cookie = cookie or secrets.token_urlsafe(24)
        self.discovery_port = discovery_port or free_port(socket.SOCK_DGRAM)
        ports = [free_port(socket.SOCK_STREAM) for _ in range(count + 1)]
        # one port more than slaves: the master's
        self.master_port, self.slave_ports = ports[0], sorted(ports[1:])  # in ring order
        self.nodes = [NodeId(host, port) for port in self.slave_ports]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.relays: list[_Relay] = []  # the slaves' stdout
        self.err_relays: list[_Relay] = []  # and their stderr
        self.master: subprocess.Popen[bytes] | None = None
        self.master_relays: list[_Relay] = []

    def __enter__(self) -> LocalSlaves:
        return self

    def __exit__(
        self,
        tp: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        wait_or_kill([*self.procs, *([self.master] if self.master else [])], 0.0)
        self._join_relays()

    def _env(self) -> dict[str, str]:
        return dict(os.environ, CLOUDY_COOKIE=self.cookie)

    def _detect(self) -> tuple[str, ...]:
        return ("--detect", f"{self.detect}s") if self.detect else ()

    def start(self, out: Lines, err: Lines) -> None:
        """Start every slave, its stdout relayed to *out* and its stderr to *err*; Ctrl-C
        reaches this process only."""
        for port in self.slave_ports:
            proc = subprocess.Popen(
                [
                    *cloudy_command(),
                    "slave",
                    self.host,
                    str(port),
                    "--discovery-port",
                    str(self.discovery_port),
                    "--exit-with-stdin",
                    "--heart",
                    "--quiet",
                    *self._detect(),
                ],
                env=self._env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # Ctrl-C reaches us only; we end the slaves ourselves
                start_new_session=True,
            )
            self.procs.append(proc)
            assert proc.stdout is not None and proc.stderr is not None
            self.relays.append(_Relay(proc.stdout, out))
            self.err_relays.append(
                _Relay(proc.stderr, err if self.verbose else _but_first_start(err))
            )

    def start_master(
        self, params: Params, on_stderr: Callable[[str], None], err: Lines, within: float
    ) -> subprocess.Popen[bytes]:
        """Start ``cloudy master --json`` over the slaves (found within *within* s) as a
        child process; its stderr is relayed to *err* (each line also to *on_stderr*),
        its report kept (`master_report`)."""
        us = [str(round(t * 1e6)) for t in (params.send_for, params.wait_for)]
        master = subprocess.Popen(
            [
                *(*cloudy_command(), "master", self.host, str(self.master_port), *us),
                *(str(params.seed), "--slaves", str(len(self.slave_ports)), "--json"),
                *("--discovery-port", str(self.discovery_port), "--model", params.model),
                *("--tokens", str(params.tokens), "--discover-timeout", f"{within}s"),
                *(("--window", str(params.window)) if params.window else ()),
                *self._detect(),
            ],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent(),  # it ends with us, however we end
            start_new_session=True,
        )
        assert master.stdout is not None and master.stderr is not None
        self.master = master
        self.master_relays = [
            _Relay(master.stdout, None),
            _Relay(master.stderr, err, on_stderr),
        ]
        return master

    def master_report(self) -> Report | None:
        """The report of the master `start_master` started, once it has exited; None if
        it printed none (it was killed, say)."""
        if self.master is None or self.master.poll() is None:
            return None
        self.master_relays[0].thread.join(5.0)
        for line in reversed(self.master_relays[0].lines):
            with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                return msgspec.json.decode(line, type=Report)
        return None

    def node_pid(self, index: int) -> int | None:
        """The PID of slave *index*'s node process (its heart's child), if it has one now."""
        heart = self.procs[index].pid
        for path in glob.glob(f"/proc/{heart}/task/*/children"):
            with contextlib.suppress(OSError), open(path) as f:
                for pid in f.read().split():
                    return int(pid)
        return None

    def outcomes(self) -> list[SlaveOutcome]:
        """What each slave printed last: its result, or why it has none."""
        found = []
        for node, relay in zip(self.nodes, self.relays, strict=True):
            outcome = SlaveOutcome(node)
            for line in relay.lines:
                if (m := RESULT_LINE.match(line)) is not None:
                    outcome = SlaveOutcome(node, line, RingResult(int(m[2]), float(m[3])))
                elif NO_RESULT in line:
                    outcome = SlaveOutcome(node, line)
            found.append(outcome)
        return found

    def wait_for_outcomes(
        self, timeout: float, nodes: Collection[str] | None = None
    ) -> list[SlaveOutcome]:
        """Wait up to *timeout* s until every slave (of *nodes*, if given) has printed its
        result or that it has none (or ended); what each printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            outcomes = self.outcomes()
            ended = [not r.thread.is_alive() for r in self.relays]
            if all(
                o.line is not None or e or (nodes is not None and str(o.node) not in nodes)
                for o, e in zip(outcomes, ended, strict=True)
            ):
                break
            time.sleep(0.05)
        return self.outcomes()

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
        self._join_relays()

    def _join_relays(self) -> None:
        """Wait (briefly) until what the children wrote has been passed on."""
        deadline = time.monotonic() + 2.0
        for relay in [*self.relays, *self.err_relays, *self.master_relays]:
            relay.thread.join(max(deadline - time.monotonic(), 0.0))


def cloudy_command() -> list[str]:
    """The command line that runs ``cloudy`` with this Python."""
    return [sys.executable, "-m", "cloudy"]


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


def exit_with_stdin(on_eof: Callable[[], None] = lambda: None) -> None:
    """End this process when stdin reaches EOF: its parent (`cloudy local`) has gone.
    *on_eof* is called first (to say so)."""

    def watch() -> None:
        # os.read, not sys.stdin: a buffered reader's lock held by this daemon thread
        # would abort the interpreter at a normal exit
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        with contextlib.suppress(Exception):
            on_eof()
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-stdin", daemon=True).start()
