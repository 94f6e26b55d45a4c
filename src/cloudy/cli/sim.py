"""``cloudy sim``: the experiment as seeded schedules in the simulator, checked.

A sweep runs ``--seeds N`` schedules from ``--first`` (the models taken in turn) on
worker processes and prints, for each model, its runs and how many broke a rule, the
`Summary.line`, every failing seed with its violations and the command that replays
it, and any digest mismatch (a re-run that did not replay exactly). On a terminal a
progress bar on stderr shows how far it got. ``--seed S`` runs one schedule: its plan,
its violations, its digest and its replay command; ``--trace`` adds what happened in
virtual-time order (the boots, phases, faults and every node's log lines) and what the
nodes printed. Exit status 0 with no violation and no mismatch, else 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import heapq
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from ..ring.simulated import SIM_MODELS, Outcome, Schedule, run_schedule
from ..ring.sweep import Done, Summary, nth_schedule, schedules, sweep
from ..testing.sim.faults import FaultPlan, PlanError
from .args import UsageError
from .progress import progress_bar
from .sim_args import DEFAULT_FIRST, DEFAULT_SEEDS

__all__ = ["cmd_sim", "replay_line"]
# A violation is said in one line, some of them long: the text output shows this much.
SHOWN = 300


def cmd_sim(args: argparse.Namespace) -> int:
    """Run ``cloudy sim`` (see the module); the exit status."""
    plan = _plan(args)
    models = list(SIM_MODELS) if args.model == "all" else [args.model]
    first = DEFAULT_FIRST if args.first is None else args.first
    options: dict[str, Any] = {"slaves": args.nodes, "plan": plan, "faults": not args.no_faults}
    options |= {"send_for": args.send_for or 0.0}
    options |= {"wait_for": 0.2 if args.wait_for is None else args.wait_for}
    if args.seed is not None:
        if args.seeds is not None:
            raise UsageError("--seed runs one schedule, --seeds many: give one of them")
        # the schedule a sweep from --first gives this seed (its model and discovery)
        index = args.seed - first if args.model == "all" else 0
        one = nth_schedule(index, args.seed, models, **options)
        return _replay(dataclasses.replace(one, discover=True) if args.discover else one, args)
    if args.trace:
        raise UsageError("--trace shows one schedule's run: give --seed S")
    todo = schedules(range(first, first + (args.seeds or DEFAULT_SEEDS)), models, **options)
    if args.discover:
        todo = [dataclasses.replace(s, discover=True) for s in todo]
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    with progress_bar("sim", len(todo), failing=0) as bar:
        failing = 0

        def step(done: Done) -> None:
            nonlocal failing
            if not done.rerun:  # (a rerun checks a digest: not one more schedule)
                failing += bool(done.violations)
                bar(advance=1, failing=failing)

        summary = sweep(
            todo, workers=min(workers, len(todo)), rerun_every=args.rerun_every, on_done=step
        )
    if args.json:
        print(json.dumps(_summary_json(summary) | {"line": summary.line()}))
    else:
        _print_summary(summary)
    return 0 if not summary.violations and not summary.mismatches else 1


def _plan(args: argparse.Namespace) -> FaultPlan | None:
    if args.faults is None:
        return None
    if args.no_faults:
        raise UsageError("--faults and --no-faults say different things: give one")
    try:
        plan = FaultPlan.parse(args.faults)
    except PlanError as e:
        raise UsageError(f"--faults: {e}") from None
    names = {"m", *(f"s{i + 1}" for i in range(args.nodes))}
    for fault in plan.faults:
        for name in (*fault.a, *fault.b):
            if name not in names:
                raise UsageError(
                    f"--faults: {fault}: no node {name!r} in a run of {args.nodes} slaves "
                    f"(the master is m, the slaves s1..s{args.nodes})"
                )
    return plan


def replay_line(schedule: Schedule) -> str:
    """``replay: COMMAND``, and the commit it ran at as a shell comment (if known)."""
    commit = _commit()
    return f"replay: {schedule.command()}" + (f"  # at {commit}" if commit else "")


@functools.cache
def _commit() -> str | None:
    """This source tree's commit (``-dirty`` if changed), when run from a git checkout."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists() or not (root / "pyproject.toml").exists():
        return None
    command = ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


# --- a sweep ---------------------------------------------------------------------------


def _print_summary(summary: Summary) -> None:
    for done in sorted(summary.failing, key=lambda d: d.schedule.seed):
        s = done.schedule
        print(f"FAIL seed {s.seed} ({s.model}, {done.plan}):")
        for v in done.violations:
            print(f"  {v if len(v) <= SHOWN else v[:SHOWN] + '…'}")
        print(f"  {replay_line(s)}")
    for s, first, again in summary.mismatched:
        print(f"MISMATCH seed {s.seed} ({s.model}): digest {first}, then {again}")
        print(f"  {replay_line(s)}")
    for model, (runs, bad) in sorted(summary.by_model.items()):
        print(f"{model}: {runs} schedules, {bad} with violations")
    print(summary.line())


def _summary_json(summary: Summary) -> dict[str, Any]:
    failing = [
        {
            "seed": d.schedule.seed,
            "model": d.schedule.model,
            "plan": d.plan,
            "violations": list(d.violations),
            "replay": d.schedule.command(),
        }
        for d in sorted(summary.failing, key=lambda d: d.schedule.seed)
    ]
    mismatched = [
        {"seed": s.seed, "model": s.model, "digests": [a, b], "replay": s.command()}
        for s, a, b in summary.mismatched
    ]
    by_model = {m: {"runs": r, "violations": v} for m, (r, v) in sorted(summary.by_model.items())}
    return {
        "ok": not summary.violations and not summary.mismatches,
        "runs": summary.runs,
        "violations": summary.violations,
        "mismatches": summary.mismatches,
        "by_model": by_model,
        "failing": failing,
        "mismatched": mismatched,
        "commit": _commit(),
    }


# --- one schedule ----------------------------------------------------------------------


def _replay(schedule: Schedule, args: argparse.Namespace) -> int:
    out = run_schedule(schedule, keep=True)
    bad = int(bool(out.violations))
    summary = Summary(1, bad, by_model={schedule.model: [1, bad]})
    done = Done(schedule, str(out.plan), out.digest, tuple(out.violations), out.cpu, 0.0, 0)
    summary.failing += [done] * bad
    trace, printed = _trace(out) if args.trace else ([], [])
    if args.json:
        results = {n: list(r) for n, r in sorted(out.results.items())}
        more: dict[str, Any] = {"seed": schedule.seed, "model": schedule.model}
        more |= {"nodes": schedule.slaves, "plan": str(out.plan), "digest": out.digest}
        more |= {"master": _master(out), "results": results, "replay": schedule.command()}
        if args.trace:
            more |= {"trace": trace, "printed": printed}
        print(json.dumps(_summary_json(summary) | more))
        return 1 if out.violations else 0
    s = schedule
    print(
        f"seed {s.seed}: model {s.model}, {s.slaves} slaves, send {s.send_for:g} s, wait "
        f"{s.wait_for:g} s{', the master discovers its slaves' * s.discover}"
    )
    print(f"plan: {out.plan}")
    if args.trace:
        print("nodes: " + ", ".join(f"{n} {addr}" for addr, n in _names(out).items()))
        print("what happened (virtual s; node, or world: the simulator's own events):")
        print("\n".join(trace))
        print("what the nodes printed:")
        print("\n".join(f"  {line}" for line in printed) or "  (nothing)")
    said = "; ".join(f"{n} <{c}, {t!r}>" for n, (c, t) in sorted(out.results.items()))
    print(f"results: {said or 'none'}")
    print(f"master: {_master(out)}")
    if out.violations:
        print(f"{len(out.violations)} violations:")
        print("\n".join(f"  {v}" for v in out.violations))
    else:
        print("no violations")
    print(f"digest {out.digest} ({out.virtual:.3f} virtual s, {1000 * out.cpu:.0f} ms cpu)")
    print(replay_line(schedule))
    return 1 if out.violations else 0


def _names(out: Outcome) -> dict[str, str]:
    """Each node's address (as its ids and lines say it) -> its name in the plan."""
    sim = out.sim
    return {} if sim is None else {f"{n.host}:{n.port}": name for name, n in sim.nodes.items()}


def _master(out: Outcome) -> str:
    """What the master said of its run, in a few words."""
    if out.error is not None:
        return f"failed: {out.error}"
    report = out.report
    if report is None:
        return f"no report (gone in {out.phase or 'START'})"
    names = _names(out)
    lost = [names.get(n.removeprefix("nid://").rpartition(":")[0], n) for n in report.lost]
    said = f"{len(report.slaves)} slaves {'agree' if report.agree else 'DO NOT agree'}"
    said += f" on <{report.count}, {report.sum!r}>" if report.agree else ""
    return said + (f"; lost {', '.join(lost)}" if lost else "")


def _trace(out: Outcome) -> tuple[list[str], list[str]]:
    """The run's trace (but reads of bytes, counted) merged with every node's log lines
    in virtual-time order; and what the nodes printed."""
    sim = out.sim
    assert sim is not None
    world = sim.world
    events = [
        (at, f"{at:12.6f} {'world':<6} {kind:<7} {' '.join(map(str, fields))}")
        for at, kind, fields in world.trace.events
        if kind != "read"
    ]
    reads = len(world.trace.events) - len(events)
    logs = [(float(line.split(None, 1)[0]), line) for line in world.logs]
    lines = [line for _, line in heapq.merge(events, logs, key=lambda e: e[0])]
    lines.append(f"({reads} reads of bytes in the trace not shown; digest {out.digest})")
    return lines, out.output.splitlines()
