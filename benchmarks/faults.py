"""The cloudy experiment with one random fault per run: is every printed result still right?

Run by hand: ``.venv/bin/python benchmarks/faults.py [--runs 20] [--fault-free 5]``.
Each run is ``cloudy local --slaves 4 --send-for 2s --wait-for 1s --with-seed RUN`` with
one fault: ``kill -9`` or a 3 s freeze (SIGSTOP, SIGCONT) of a random slave node or of
the master, at T uniform in [0.2, 2.8] s after SEND began (in SEND or GRACE). Fault-free
runs, spread among them, are the reference. Every slave's printed ``<COUNT, SUM>`` is
checked against the oracle (`cloudy.ring.expected_result`).

One line per run, then the figures; the last line holds them:

- safe: runs in which every printed result agreed and matched the oracle;
- finished: runs in which every live slave node printed one agreed result (a slave
  node killed is restarted by its heart and is live: its new ring process rejoins, or
  if it came back too late, it is named among those that printed nothing);
- rate: the median agreed rate (COUNT over the SEND period as the master measured it;
  the nominal period when the master was killed) of the fault runs, over that of the
  fault-free runs.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

from cloudy.ring import expected_result

SLAVES = 4
SEND_FOR, WAIT_FOR = 2.0, 1.0
FREEZE_FOR = 3.0
RESULT = re.compile(r"^(nid://\S+) <(\d+), (\S+)>( \(finished without a master\))?$", re.M)
NO_RESULT = re.compile(r"^(nid://\S+) has no agreed result: (.*)$", re.M)
STARTED = re.compile(r"^heart: started slave (nid://\S+), pid \d+$", re.M)
RESTARTED = re.compile(r"^heart: slave (nid://\S+) exited with .*; restarting", re.M)
FAULT = re.compile(r"^cloudy: fault: (.*)$", re.M)
VICTIM = re.compile(r"^cloudy: fault: (?:kill -9|freeze \(SIGSTOP\)) slave (nid://\S+)", re.M)
RATE = re.compile(r"^\d+ messages agreed in .*: ([\d,]+) msgs/s", re.M)


@dataclass
class Run:
    number: int
    fault: str  # "" for a fault-free run
    flags: list[str]
    status: int | None = None  # None: timed out
    results: dict[str, set[tuple[int, float]]] = field(default_factory=dict)
    no_result: dict[str, str] = field(default_factory=dict)
    nodes: list[str] = field(default_factory=list)
    restarted: set[str] = field(default_factory=set)
    victim: str | None = None
    rate: float = 0.0
    faults_said: list[str] = field(default_factory=list)

    @property
    def printed(self) -> set[tuple[int, float]]:
        return set().union(*self.results.values()) if self.results else set()

    @property
    def agreed(self) -> tuple[int, float] | None:
        printed = self.printed
        return next(iter(printed)) if len(printed) == 1 else None

    @property
    def safe(self) -> bool:
        """Every printed result the same, and the oracle's for its count."""
        printed = self.printed
        return len(printed) <= 1 and all(
            total == expected_result(self.number, count).sum for count, total in printed
        )

    @property
    def silent(self) -> list[str]:
        return [n for n in self.nodes if n not in self.results]

    @property
    def finished(self) -> bool:
        """One agreed result, printed by every live slave node (all of them: a killed
        node is restarted by its heart)."""
        return self.safe and self.agreed is not None and not self.silent

    @property
    def finished_but_restarted(self) -> bool:
        """Finished, if slaves killed and restarted by their hearts are not counted."""
        silent = set(self.silent)
        return self.safe and self.agreed is not None and silent <= self.restarted


def plan(runs: int, fault_free: int, rng: random.Random) -> list[Run]:
    """*runs* fault runs with *fault_free* fault-free runs spread evenly among them."""
    faults = []
    for _ in range(runs):
        action, target = rng.choice(["kill", "freeze"]), rng.choice(["slave", "master"])
        at, k = round(rng.uniform(0.2, 2.8), 2), rng.randrange(SLAVES)
        who = f"slave {k}" if target == "slave" else "master"
        if action == "kill":
            what, flags = f"kill -9 {who} at {at:.2f} s", [f"--kill-{target}-at", f"{at}s"]
        else:
            what = f"freeze {who} at {at:.2f} s for {FREEZE_FOR:g} s"
            flags = [f"--freeze-{target}-at", f"{at}s:{FREEZE_FOR:g}s"]
        faults.append((what, flags + (["--fault-slave", str(k)] if target == "slave" else [])))
    # the fault-free runs: one before fault runs 0, runs/fault_free, 2*runs/fault_free, ...
    free_before = [j * runs // fault_free for j in range(fault_free)]
    order: list[tuple[str, list[str]]] = []
    for i, fault in enumerate(faults):
        order += [("", [])] * free_before.count(i) + [fault]
    order += [("", [])] * sum(b >= runs for b in free_before)
    return [Run(number, what, flags) for number, (what, flags) in enumerate(order)]


def execute(run: Run, logs: str | None) -> None:
    command = [
        *(sys.executable, "-m", "cloudy", "local", "--slaves", str(SLAVES)),
        *("--send-for", f"{SEND_FOR:g}s", "--wait-for", f"{WAIT_FOR:g}s"),
        *("--with-seed", str(run.number), *run.flags),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        out, err, run.status = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        out, err = _text(e.stdout), _text(e.stderr)
    if logs is not None:
        os.makedirs(logs, exist_ok=True)
        for name, text in (("out", out), ("err", err)):
            with open(os.path.join(logs, f"run-{run.number}.{name}"), "w") as f:
                f.write(f"# {shlex.join(command)}\n{text}")
    for node, count, total, _ in RESULT.findall(out):
        run.results.setdefault(node, set()).add((int(count), float(total)))
    run.no_result = dict(NO_RESULT.findall(out))
    run.nodes = list(dict.fromkeys(STARTED.findall(err)))
    run.restarted = set(RESTARTED.findall(err))
    run.victim = next(iter(VICTIM.findall(err)), None)
    run.faults_said = FAULT.findall(err)
    rate = RATE.search(out)
    if rate is not None and run.agreed is not None:
        run.rate = float(rate.group(1).replace(",", ""))


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def describe(run: Run) -> str:
    fault = run.fault or "no fault"
    status = "timed out" if run.status is None else f"exit {run.status}"
    agreed = run.agreed
    if agreed is not None:
        outcome = f"<{agreed[0]}, {agreed[1]!r}> by {len(run.results)}/{len(run.nodes)}"
    elif run.printed:
        outcome = "DISAGREE: " + " ".join(
            f"{n}=<{c}, {s!r}>" for n, r in run.results.items() for c, s in r
        )
    else:
        outcome = "no result printed"
    verdict = ("safe" if run.safe else "UNSAFE") + (", finished" if run.finished else "")
    notes = []
    for node in run.silent:
        why = run.no_result.get(node)
        if why is not None:
            notes.append(f"{node} has no agreed result ({why})")
        elif node in run.restarted:
            notes.append(f"{node} printed nothing (killed, restarted by its heart)")
        else:
            notes.append(f"{node} printed nothing")
    if not run.safe and run.printed:
        notes.append(f"oracle for each count: {sorted(run.printed)}")
    unsaid = [line for line in run.faults_said if "not injected" in line or "had gone" in line]
    notes += unsaid
    rate = f"{run.rate:,.0f} msgs/s" if run.rate else "-"
    line = f"run {run.number:2}: {fault:34} {status:9} {verdict:16} {rate:>13}  {outcome}"
    return line + "".join(f"\n        {note}" for note in notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="runs with a fault (20)")
    parser.add_argument("--fault-free", type=int, default=5, help="reference runs (5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault plan (1)")
    parser.add_argument("--logs", metavar="DIR", help="keep each run's stdout and stderr here")
    args = parser.parse_args()
    runs = plan(args.runs, args.fault_free, random.Random(args.seed))
    for run in runs:
        execute(run, args.logs)
        print(describe(run), flush=True)
    faulty = [r for r in runs if r.fault]
    free = [r for r in runs if not r.fault]
    n = len(faulty)
    safe = sum(r.safe for r in faulty)
    finished = sum(r.finished for r in faulty)
    finished_restarts_aside = sum(r.finished_but_restarted for r in faulty)
    free_rate = statistics.median(r.rate for r in free) if free else 0.0
    fault_rate = statistics.median(r.rate for r in faulty) if faulty else 0.0
    print(
        f"fault-free: {len(free)} runs, safe {sum(r.safe for r in free)}/{len(free)}, "
        f"finished {sum(r.finished for r in free)}/{len(free)}, median {free_rate:,.0f} msgs/s; "
        f"fault runs: median {fault_rate:,.0f} msgs/s"
    )
    print(
        f"finished {finished_restarts_aside}/{n} if slaves killed and restarted by their "
        f"hearts too late to rejoin are not counted as live"
    )
    ratio = fault_rate / free_rate if free_rate else 0.0
    print(f"safe {safe}/{n}  finished {finished}/{n}  rate {ratio:.2f} of fault-free")
    return 0 if safe == n else 1


if __name__ == "__main__":
    sys.exit(main())
