"""Faults injected into a run's child OS processes at set moments, for ``cloudy local``.

A `Fault` says what (``kill -9``, or a freeze: SIGSTOP, then SIGCONT a while later),
to whom (a slave, by its index, or the master) and when: seconds after SEND began.
`plan_faults` turns the command line's flags into faults, picking the slave at random
unless one is named. `FaultInjector` carries them out: `start` (called when SEND
begins; later calls do nothing) starts a thread that waits for each moment, asks who
the victim is then (its name and PID: a slave's node may have been restarted since)
and sends the signal, with one line on stderr per signal sent::

    cloudy: fault: kill -9 slave nid://127.0.0.1:4711:0 (pid 1234) at 1.0 s into SEND

Leaving the injector (normally, on failure, or on Ctrl-C) cancels the faults not yet
due, each with a line saying so, and sends SIGCONT to every process it froze and has
not woken yet: a frozen process is never left behind.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, TextIO

__all__ = ["Fault", "FaultInjector", "Victim", "parse_freeze", "plan_faults"]

Victim = Callable[["Fault"], tuple[str, int | None]]
"""``victim(fault) -> (name, pid)``: whom *fault* hits now; pid None if it has no process."""


@dataclass(frozen=True)
class Fault:
    """``kill`` (SIGKILL) or ``freeze`` (SIGSTOP for *lasting* s) of a slave or the master,
    *at* seconds after SEND began; *slave* is the slave's index (None for the master)."""

    action: Literal["kill", "freeze"]
    at: float
    slave: int | None = None
    lasting: float = 0.0


def parse_freeze(text: str, seconds: Callable[[str], float] = float) -> tuple[float, float]:
    """``T:D`` (e.g. ``1.0s:3s``): freeze at T for D; *seconds* reads each. Raises
    `ValueError` for anything else."""
    at, colon, lasting = text.partition(":")
    if not colon:
        raise ValueError(f"not a freeze: {text!r} (use T:D, e.g. 1.0s:3s: at T, for D)")
    return seconds(at), seconds(lasting)


def plan_faults(
    slaves: int,
    *,
    kill_slave_at: float | None = None,
    freeze_slave_at: tuple[float, float] | None = None,
    kill_master_at: float | None = None,
    freeze_master_at: tuple[float, float] | None = None,
    fault_slave: int | None = None,
    rng: random.Random | None = None,
) -> list[Fault]:
    """The faults the flags ask for, in order of time. Slave faults all hit slave
    *fault_slave*, or one slave picked at random. Raises `ValueError` for a slave
    index out of range."""
    if fault_slave is not None and not 0 <= fault_slave < slaves:
        raise ValueError(f"--fault-slave {fault_slave}: there are slaves 0 to {slaves - 1}")
    if fault_slave is None:
        fault_slave = (rng or random.Random()).randrange(slaves)
    faults = []
    if kill_slave_at is not None:
        faults.append(Fault("kill", kill_slave_at, fault_slave))
    if freeze_slave_at is not None:
        faults.append(Fault("freeze", freeze_slave_at[0], fault_slave, freeze_slave_at[1]))
    if kill_master_at is not None:
        faults.append(Fault("kill", kill_master_at))
    if freeze_master_at is not None:
        faults.append(Fault("freeze", freeze_master_at[0], None, freeze_master_at[1]))
    return sorted(faults, key=lambda f: f.at)


@dataclass(frozen=True)
class _Step:
    at: float
    sig: signal.Signals
    fault: Fault


class FaultInjector:
    """Carry out *faults* on the processes *victim* names, timed from `start`.

    Use it as a context manager around the run; *send_for* only names the phase a
    moment falls in, in the lines written to *out* (stderr by default).
    """

    def __init__(
        self,
        faults: list[Fault],
        victim: Victim,
        send_for: float,
        out: TextIO | None = None,
    ) -> None:
        self.faults, self.victim, self.send_for = faults, victim, send_for
        self.out = out or sys.stderr
        steps = []
        for f in faults:
            if f.action == "kill":
                steps.append(_Step(f.at, signal.SIGKILL, f))
            else:
                steps += [
                    _Step(f.at, signal.SIGSTOP, f),
                    _Step(f.at + f.lasting, signal.SIGCONT, f),
                ]
        self.steps = sorted(steps, key=lambda s: s.at)  # stable: a freeze's stop first
        self.done: list[_Step] = []  # carried out or skipped, in order
        self.frozen: dict[Fault, tuple[str, int]] = {}  # stopped and not woken yet
        self._began: float | None = None
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FaultInjector:
        return self

    def __exit__(
        self,
        tp: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def started(self) -> bool:
        """Whether `start` was called: SEND has begun."""
        return self._began is not None

    def start(self) -> None:
        """SEND has begun: the faults' moments count from now. Only the first call counts."""
        with self._lock:
            if self._began is not None or self._cancel.is_set() or not self.steps:
                return
            self._began = time.monotonic()
            self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Cancel the faults not yet due; wake every process still frozen."""
        with self._lock:
            self._cancel.set()
            thread = self._thread
        if thread is not None:
            thread.join(5.0)
        now = self._elapsed()
        for fault, (name, pid) in list(self.frozen.items()):
            self._signal(signal.SIGCONT, name, pid, f"{self._when(now)}, on the way out")
            del self.frozen[fault]
        pending = [s for s in self.steps if s not in self.done and s.sig != signal.SIGCONT]
        for step in pending:
            why = "SEND never began" if self._began is None else f"it ended at {now:.1f} s"
            self._say(f"{self._describe(step.fault)} not injected: {why}")

    def _run(self) -> None:
        assert self._began is not None
        for step in self.steps:
            if self._cancel.wait(max(self._began + step.at - time.monotonic(), 0.0)):
                return
            with self._lock:
                if self._cancel.is_set():
                    return
                self._carry_out(step)
                self.done.append(step)

    def _carry_out(self, step: _Step) -> None:
        fault, when = step.fault, self._when(self._elapsed())
        if step.sig == signal.SIGCONT:
            frozen = self.frozen.pop(fault, None)
            if frozen is not None:
                self._signal(signal.SIGCONT, *frozen, f"{when}, after {fault.lasting:g} s")
            return
        name, pid = self.victim(fault)
        if pid is None:
            self._say(f"{self._describe(fault)} not injected: {name} has no process now")
            return
        if step.sig == signal.SIGKILL:
            self._signal(signal.SIGKILL, name, pid, when)
        elif self._signal(signal.SIGSTOP, name, pid, f"{when}, for {fault.lasting:g} s"):
            self.frozen[fault] = (name, pid)

    def _signal(self, sig: signal.Signals, name: str, pid: int, when: str) -> bool:
        what = {signal.SIGKILL: "kill -9", signal.SIGSTOP: "freeze (SIGSTOP)"}
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            self._say(f"{what.get(sig, sig.name)} {name} (pid {pid}) {when}: it had gone")
            return False
        self._say(f"{what.get(sig, sig.name)} {name} (pid {pid}) {when}")
        return True

    def _elapsed(self) -> float:
        return 0.0 if self._began is None else time.monotonic() - self._began

    def _when(self, t: float) -> str:
        if t < self.send_for:
            return f"at {t:.1f} s into SEND"
        return f"at {t:.1f} s after SEND began ({t - self.send_for:.1f} s after its end)"

    def _describe(self, fault: Fault) -> str:
        who = "the master" if fault.slave is None else f"slave {fault.slave}"
        if fault.action == "kill":
            return f"kill -9 of {who} at {fault.at:g} s"
        return f"freeze of {who} at {fault.at:g} s for {fault.lasting:g} s"

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.out.write(f"cloudy: fault: {line}\n")  # one write: children share the stream
            self.out.flush()
