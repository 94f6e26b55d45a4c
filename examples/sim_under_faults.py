"""Your own processes under faults, in the simulator: a supervised counter and a client
that must never see an increment lost or counted twice.

    python examples/sim_under_faults.py              # 200 seeds
    python examples/sim_under_faults.py --seed 17    # one, with its trace's digest

Three nodes run in this one process, each a real cloudy node: ``client``, and
``primary`` and ``backup`` where a supervisor on ``client`` keeps one `counter`
running (on primary, else on backup). The client makes forty adds, each carrying its
number (retried until some counter confirms it); a counter answers with the numbers
it holds. A fault plan drawn from the seed crashes, restarts, freezes or cuts off
the counter's node meanwhile. The check: every add that a counter confirmed is still
held by that same counter (the same pid) when it last answered — a pid never stands
for a new process with other state, a confirmed add is never lost without a word —
and with no fault every add is confirmed. The same seed gives the same run, event
for event.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import warnings

from cloudy import (
    CloudyError,
    NodeId,
    ProcessId,
    closure,
    expect_timeout,
    get_self_pid,
    register,
    remotable,
    send,
    whereis_remote,
)
from cloudy.supervisor import ChildSpec, start_supervisor
from cloudy.testing.sim import Sim
from cloudy.testing.sim.faults import Fault, FaultPlan

warnings.filterwarnings("ignore", message=".* is defined in __main__")

ADDS = 40


@remotable
async def counter() -> None:
    """Holds each add's number once, and answers with all it holds."""
    register("counter", get_self_pid())
    held: list[int] = []
    while True:
        msg = await expect_timeout(3600.0, tuple)
        if msg is not None:
            reply_to, number = msg
            if number not in held:  # (a retried add that had arrived: held once)
                held.append(number)
            send(reply_to, (get_self_pid(), held))


Seen = dict[ProcessId, tuple[set[int], list[int]]]  # confirmed by, and last answer of, a pid


async def client(homes: list[NodeId]) -> Seen:
    """Supervise the counter and make ADDS adds; what each counter confirmed and said."""
    spec = ChildSpec("counter", closure(counter), node=homes)
    await start_supervisor([spec], intensity=20, period=60.0)
    seen: Seen = {}
    for number in range(ADDS):
        await asyncio.sleep(0.1)  # (four seconds of adds: the faults fall among them)
        for _ in range(20):  # a while of retries, then this add is left unconfirmed
            if await _add(homes, number, seen):
                break
    return seen


async def _add(homes: list[NodeId], number: int, seen: Seen) -> bool:
    for home in homes:
        try:
            pid = await whereis_remote(home, "counter", 0.5)
        except (TimeoutError, CloudyError):  # that node is down, frozen or cut off
            continue
        if pid is None:
            continue
        send(pid, (get_self_pid(), number))
        answer = await expect_timeout(0.5, tuple)
        if answer is not None:
            by, held = answer
            confirmed, _ = seen.get(by, (set(), []))
            seen[by] = (confirmed | ({number} if number in held else set()), held)
            if number in held:
                return True
    return False


def plan_for(seed: int) -> FaultPlan:
    rng = random.Random(f"example {seed}")
    kind = rng.choice(["crash", "restart", "pause", "cut", "none"])
    at, span = round(rng.uniform(0.1, 2.0), 3), round(rng.uniform(0.2, 3.0), 3)
    if kind == "none":
        return FaultPlan()
    if kind == "cut":
        return FaultPlan((Fault("cut", ("primary",), ("client",), at, span),))
    return FaultPlan((Fault(kind, ("primary",), (), at, 0.0 if kind == "crash" else span),))


def run(seed: int) -> tuple[str, str, Seen]:
    with Sim(seed) as sim:
        me, primary, backup = (
            sim.add_node("client"),
            sim.add_node("primary"),
            sim.add_node("backup"),
        )
        plan = plan_for(seed)
        plan.apply(sim)
        homes = [primary.node_id, backup.node_id]
        seen = sim.run(me, me.node.run_process(client, homes))
        return str(plan), sim.digest, seen


def check(seed: int) -> str | None:
    """What went wrong in the run of *seed*, or None."""
    plan, _, seen = run(seed)
    for pid, (confirmed, held) in seen.items():
        if not confirmed <= set(held):
            lost = sorted(confirmed - set(held))
            return f"seed {seed} ({plan}): {pid} confirmed adds {lost}, then no longer held them"
    total = len(set().union(*(c for c, _ in seen.values())))
    if plan == "none" and total != ADDS:
        return f"seed {seed}: no fault, yet only {total} of {ADDS} adds were confirmed"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.seed is not None:
        plan, digest, seen = run(args.seed)
        print(f"seed {args.seed}: faults {plan}; digest {digest}")
        for pid, (confirmed, held) in seen.items():
            print(f"  {pid} confirmed {len(confirmed)} adds, last held {len(held)}")
        print(check(args.seed) or "  all confirmed adds held")
        return
    failures = [f for f in map(check, range(args.seeds)) if f is not None]
    print("\n".join(failures))
    print(f"{args.seeds} seeds, {len(failures)} failures")


if __name__ == "__main__":
    main()
