"""Seeded schedules of the experiment in the simulator, faults on, across the three models.

    python benchmarks/sim_schedules.py                 # 10,000 schedules on 2 workers
    python benchmarks/sim_schedules.py --seeds 600 --first 50000

Each schedule is a cluster of a master and 4 slaves (real cloudy nodes in one process,
on a virtual clock and network) running the experiment under a fault plan drawn from
its seed; every run is checked (`cloudy.ring.simulated`), and every hundredth seed is
run again on whichever worker is free and its trace digest compared. Prints each
failing seed with the command that replays it, and on its last line:

    N schedules, V violations, M mismatches, X ms/schedule, Yx virtual/real
"""

from __future__ import annotations

import argparse
import os
import sys

from cloudy.ring.simulated import SIM_MODELS
from cloudy.ring.sweep import Done, schedules, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10_000, help="how many (default 10000)")
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--models", default=",".join(SIM_MODELS), help="taken in turn")
    parser.add_argument("--slaves", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rerun-every", type=int, default=100)
    args = parser.parse_args()

    todo = schedules(
        range(args.first, args.first + args.seeds), args.models.split(","), slaves=args.slaves
    )
    step = max(len(todo) // 20, 1)
    count = 0

    def progress(done: Done) -> None:
        nonlocal count
        if done.violations:
            print(f"FAIL seed {done.schedule.seed} ({done.schedule.model}, {done.plan}):")
            for v in done.violations:
                print(f"  {v[:300]}")
            print(f"  replay: {done.schedule.command()}", flush=True)
        if not done.rerun:
            count += 1
            if count % step == 0:
                print(f"{count}/{len(todo)}", file=sys.stderr, flush=True)

    summary = sweep(todo, workers=args.workers, rerun_every=args.rerun_every, on_done=progress)
    for s, first, again in summary.mismatched:
        print(f"MISMATCH seed {s.seed} ({s.model}): {first} then {again}: {s.command()}")
    for model, (runs, bad) in sorted(summary.by_model.items()):
        print(f"{model}: {runs} schedules, {bad} with violations")
    print(summary.line())


if __name__ == "__main__":
    main()
