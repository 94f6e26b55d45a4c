"""Keeping a node's OS process running, as Erlang's ``heart`` does: ``cloudy slave --heart``.

`keep_running` is a small parent process's whole life: it starts the node as a child OS
process and starts it again, with the same command line and environment, whenever it
dies — one line on stderr per restart — until either

- the child ends normally (exit status 0: a master terminated the slave): the heart
  exits 0 with it, since there is nothing to restart;
- it would be restarted more than R times within T seconds (the `Intensity`, 5 in 60 s
  by default, as an Erlang supervisor's): the heart gives up with one line, exit 1;
- the heart is told to stop (SIGTERM, SIGINT, or EOF on its stdin if it watches it):
  it ends the child by its PID — SIGTERM, then SIGKILL after a grace — and exits 0.

The heart never leaves its child behind. The child runs in a session of its own (a
Ctrl-C on the terminal reaches the heart only, which ends the child itself); on Linux
it asks the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), so
it ends with the heart even if the heart is killed with SIGKILL; and it gets a pipe as
its stdin, which closes when the heart dies anywhere (a cloudy slave ends at its EOF
with ``--exit-with-stdin``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

__all__ = [
    "DEFAULT_INTENSITY",
    "STOP_GRACE",
    "Intensity",
    "describe_status",
    "die_with_parent",
    "keep_running",
    "parse_intensity",
]

# How long a child told to stop (SIGTERM) may take before it is killed (SIGKILL); less
# than the 2 s `cloudy local` gives a heart to end after its own SIGTERM.
STOP_GRACE = 1.5
# How often the heart looks at its child, its stop flag and its stdin.
POLL_INTERVAL = 0.05
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass(frozen=True)
class Intensity:
    """At most *restarts* restarts within any *seconds* seconds; one more and the heart
    gives up."""

    restarts: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.restarts}/{self.seconds:g}"


DEFAULT_INTENSITY = Intensity(5, 60.0)


def parse_intensity(text: str, seconds: Callable[[str], float] = float) -> Intensity:
    """``R/T``: at most R (a whole number) restarts within T seconds; *seconds* reads T.

    Raises `ValueError` for anything else.
    """
    count, slash, window = text.partition("/")
    count = count.strip()
    if not slash or not count.isdigit():
        raise ValueError(
            f"not a restart intensity: {text!r} (use R/T, e.g. 5/60: R restarts in T s)"
        )
    span = seconds(window)
    if not span > 0:
        raise ValueError(f"the intensity's period must be longer than zero: {text!r}")
    return Intensity(int(count), span)


def describe_status(returncode: int) -> str:
    """``status 1``, or ``status -9 (signal 9, SIGKILL)`` for a child ended by a signal."""
    if returncode >= 0:
        return f"status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"status {returncode} (signal {-returncode})"
    return f"status {returncode} (signal {-returncode}, {name})"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent dies (Linux only).

    None where ``prctl`` is missing. The C function is looked up here, in the parent, so
    that the child between fork and exec only calls it; if the parent has died before
    the call took effect, the child exits at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody would tell us
            os._exit(1)

    return preexec


class _Heart:
    """One heart's state: its child, its restarts, and whether it was told to stop."""

    def __init__(
        self,
        command: Sequence[str],
        name: str,
        intensity: Intensity,
        out: TextIO,
        env: Mapping[str, str] | None,
        grace: float,
        watch_stdin: bool,
    ) -> None:
        self.command, self.name, self.intensity = list(command), name, intensity
        self.out, self.env, self.grace = out, env, grace
        self.watch_stdin = watch_stdin
        self.stopping = False
        self.restarts: deque[float] = deque()  # when each recent restart happened
        self.child: subprocess.Popen[bytes] | None = None

    def say(self, line: str) -> None:
        # one write: processes sharing a terminal or a pipe never split each other's lines
        self.out.write(f"heart: {line}\n")
        self.out.flush()

    def stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self.stopping = True

    def start(self) -> None:
        self.out.flush()
        self.child = subprocess.Popen(
            self.command,
            env=None if self.env is None else dict(self.env),
            stdin=subprocess.PIPE,  # closes when we die, whatever kills us
            preexec_fn=die_with_parent(),
            start_new_session=True,  # a Ctrl-C reaches us; we end the child ourselves
        )
        self.say(f"started {self.name}, pid {self.child.pid}")

    def wait(self) -> int | None:
        """Wait until the child exits (its status) or we are told to stop (None)."""
        assert self.child is not None
        while not self.stopping:
            status = self.child.poll()
            if status is not None:
                return status
            self._pause()
        return None

    def _pause(self) -> None:
        if not self.watch_stdin:
            time.sleep(POLL_INTERVAL)
            return
        try:
            ready, _, _ = select.select([0], [], [], POLL_INTERVAL)
            if ready and not os.read(0, 4096):
                self.stopping = True  # our own parent has gone
        except OSError:
            self.stopping = True

    def may_restart(self, now: float) -> bool:
        """Count one more restart at *now*; False if that is over the intensity."""
        while self.restarts and now - self.restarts[0] > self.intensity.seconds:
            self.restarts.popleft()
        if len(self.restarts) >= self.intensity.restarts:
            return False
        self.restarts.append(now)
        return True

    def end_child(self) -> None:
        """End the child by its PID: SIGTERM, then SIGKILL after the grace; reap it."""
        child = self.child
        if child is None:
            return
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, None)):
            if child.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(wait)
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()

    def run(self) -> int:
        while True:
            if self.stopping:
                return 0
            self.start()
            status = self.wait()
            if status is None:
                return 0
            if self.child is not None and self.child.stdin is not None:
                with contextlib.suppress(OSError):
                    self.child.stdin.close()
            if status == 0:
                return 0  # ended normally (terminated by a master): nothing to restart
            if self.stopping:
                return 0
            died = f"{self.name} exited with {describe_status(status)}"
            limit = self.intensity
            if not self.may_restart(time.monotonic()):
                self.say(
                    f"{died}; giving up: more than {limit.restarts} restarts within "
                    f"{limit.seconds:g} s (intensity {limit})"
                )
                return 1
            n = len(self.restarts)
            self.say(
                f"{died}; restarting ({_ordinal(n)} restart in {limit.seconds:g} s, "
                f"at most {limit.restarts})"
            )


def keep_running(
    command: Sequence[str],
    name: str,
    intensity: Intensity = DEFAULT_INTENSITY,
    *,
    out: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    grace: float = STOP_GRACE,
    watch_stdin: bool = False,
) -> int:
    """Run *command* as a child process and restart it whenever it dies; the exit status.

    *name* names the child in the lines written to *out* (stderr by default): ``heart:
    started NAME, pid N``, one line per restart, and one when giving up. With
    *watch_stdin*, EOF on this process's stdin stops the heart as SIGTERM does. Call it
    from the main thread: it handles SIGTERM and SIGINT until it returns.
    """
    heart = _Heart(command, name, intensity, out or sys.stderr, env, grace, watch_stdin)
    before = {sig: signal.signal(sig, heart.stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return heart.run()
    finally:
        heart.end_child()
        for sig, handler in before.items():
            signal.signal(sig, handler)
