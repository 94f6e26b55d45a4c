"""Many seeded schedules at once: `sweep` runs them on worker processes, re-runs some to
compare their digests, and sums it up (for ``cloudy sim`` and the benchmark).

A re-run goes to whichever worker is free, usually another process than the first
run's, with its own hash seed and its own history of runs: a digest that differs is a
leak of real time, of unordered iteration or of state between runs, and is counted as
a mismatch.
"""

from __future__ import annotations

import concurrent.futures as cf
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..testing.sim.faults import FaultPlan
from .simulated import Schedule, run_schedule

__all__ = ["Done", "Summary", "nth_schedule", "schedules", "sweep"]


@dataclass(frozen=True)
class Done:
    """What a worker sends back of one schedule's run."""

    schedule: Schedule
    plan: str
    digest: str
    violations: tuple[str, ...]
    cpu: float
    virtual: float
    agreed: int  # the count the slaves agreed on (0: none)
    rerun: bool = False


@dataclass
class Summary:
    runs: int = 0
    violations: int = 0
    mismatches: int = 0
    cpu: float = 0.0
    virtual: float = 0.0
    wall: float = 0.0
    failing: list[Done] = field(default_factory=list)
    mismatched: list[tuple[Schedule, str, str]] = field(default_factory=list)
    by_model: dict[str, list[int]] = field(default_factory=dict)  # runs, violations

    def line(self) -> str:
        ms = 1000 * self.cpu / max(self.runs, 1)
        speed = self.virtual / self.wall if self.wall else 0.0
        return (
            f"{self.runs} schedules, {self.violations} violations, {self.mismatches} "
            f"mismatches, {ms:.1f} ms/schedule, {speed:.0f}x virtual/real"
        )


def _one(schedule: Schedule, rerun: bool = False) -> Done:
    out = run_schedule(schedule)
    agreed = next(iter(out.results.values()), (0, 0.0))[0]
    return Done(
        schedule,
        str(out.plan),
        out.digest,
        tuple(out.violations),
        out.cpu,
        out.virtual,
        agreed,
        rerun,
    )


def sweep(
    schedules: Iterable[Schedule],
    *,
    workers: int = 2,
    rerun_every: int = 100,
    on_done: Callable[[Done], None] | None = None,
) -> Summary:
    """Run every schedule (on *workers* processes; 0: in this one) and every
    *rerun_every*-th once more, comparing digests."""
    summary = Summary()
    first: dict[Schedule, str] = {}
    started = time.monotonic()

    def take(done: Done) -> list[Schedule]:
        s = done.schedule
        if done.rerun:
            if first[s] != done.digest:
                summary.mismatches += 1
                summary.mismatched.append((s, first[s], done.digest))
        else:
            first[s] = done.digest
            summary.runs += 1
            summary.cpu += done.cpu
            summary.virtual += done.virtual
            tally = summary.by_model.setdefault(s.model, [0, 0])
            tally[0] += 1
            if done.violations:
                summary.violations += 1
                tally[1] += 1
                summary.failing.append(done)
        if on_done is not None:
            on_done(done)
        return [s] if not done.rerun and rerun_every and len(first) % rerun_every == 1 else []

    if workers == 0:
        for s in schedules:
            for again in take(_one(s)):
                take(_one(again, True))
    else:
        pool = cf.ProcessPoolExecutor(workers, initializer=_ignore_ctrl_c)
        try:
            pending = {pool.submit(_one, s) for s in schedules}
            while pending:
                finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for f in finished:
                    for again in take(f.result()):
                        pending.add(pool.submit(_one, again, True))
        finally:  # (on Ctrl-C too: what has not begun never will; waiting for the few
            # under way, as a pool gone before its manager thread saw the cancel runs all)
            pool.shutdown(wait=True, cancel_futures=True)
    summary.wall = time.monotonic() - started
    return summary


def _ignore_ctrl_c() -> None:
    """A worker's: Ctrl-C is the sweep's to handle (it cancels what has not begun)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def schedules(
    seeds: Iterable[int],
    models: Iterable[str],
    *,
    slaves: int = 4,
    plan: FaultPlan | None = None,
    faults: bool = True,
    send_for: float = 0.0,
    wait_for: float = 0.2,
) -> list[Schedule]:
    """One schedule per seed, the models taken in turn, each model's every other
    schedule finding its slaves by multicast discovery (as `cloudy master` does)."""
    models = list(models)
    return [
        nth_schedule(
            i,
            seed,
            models,
            slaves=slaves,
            plan=plan,
            faults=faults,
            send_for=send_for,
            wait_for=wait_for,
        )
        for i, seed in enumerate(seeds)
    ]


def nth_schedule(
    index: int,
    seed: int,
    models: list[str],
    *,
    slaves: int = 4,
    plan: FaultPlan | None = None,
    faults: bool = True,
    send_for: float = 0.0,
    wait_for: float = 0.2,
) -> Schedule:
    """The *index*-th of `schedules` (0: the first), whose seed is *seed*."""
    discover = (index // len(models)) % 2 == 1
    model = models[index % len(models)]
    return Schedule(seed, model, slaves, plan, send_for, wait_for, faults, discover=discover)
