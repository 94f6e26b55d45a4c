"""The experiment in the simulator: one seeded schedule, its faults, and its checks.

A `Schedule` names a seed, a model and a number of slaves; its fault plan is drawn
from the seed unless given. `run_schedule` builds the cluster in a `Sim` (a master
``m`` and slaves ``s1``..``sN``, each a real node), applies the plan, runs the
master's `run_experiment` to its end and checks what a user would check:

* every result a slave printed is the oracle's for its count (`expected_result`),
  and no two slaves printed different results (no two cuts were decided);
* no slave printed two results; a slave never killed says its result or why it has
  none (nothing is lost without a word);
* the master's report agrees with itself and with the slaves; with no faults at all
  every slave has the result and the master reports it;
* no node's loop met an exception that nobody handled; the run ends in time;
* beside the experiment, an ordering probe on every node streams numbered messages to
  the others (`testing.sim.probe`): none arrives twice, out of order or after a hole,
  and no monitor fires twice;
* a plan of faults that leave every node up and every path open but for an instant
  (`TRANSIENT`: resets, damaged bytes, drifting clocks) costs the run at most half its
  messages against the same schedule without faults (a connection that broke between
  two live members is made again, and what was lost on it sent again).

Each broken rule is a violation, said in one line. The same schedule gives the same
`Outcome.digest` every time it is run (the trace of every read, fault and result).
"""

from __future__ import annotations

import contextlib
import io
import random
import time
from dataclasses import dataclass, field, replace

from ..testing.sim import Latency, Sim, SimTimeout
from ..testing.sim.faults import Fault, FaultPlan
from ..testing.sim.probe import Probes, start_probes
from .checks import KILLS, NO_RESULT, RESULT, violations
from .master import ExperimentError, Params, Report, run_experiment

__all__ = ["SIM_MODELS", "Outcome", "Schedule", "draw_plan", "run_schedule"]

SIM_MODELS = ("ring", "pipelined", "stream")
# Virtual seconds a schedule may take in all (faults included) before it is a hang.
LIMIT = 300.0
# After the master is done (or gone), how long the slaves get to say their last word
# (beyond a slave's longest deadline: deciding the cut, fetching, lingering).
AFTERWARDS = 30.0
# How long the master looks for slaves, when it does (`Schedule.discover`).
DISCOVER_FOR = 0.5
# A LAN's: a hop costs about a millisecond, so that a schedule is a few hundred messages.
LATENCY = Latency(base=0.0004, jitter=0.0002)
# Faults after which the run must go on almost as fast (see the module's docstring).
TRANSIENT = ("reset", "flip", "truncate", "drift")
TRANSIENT_SHARE = 0.5
# The faults a drawn plan picks from (a kind twice is drawn twice as often); "master":
# the master crashes, pauses, stalls or is cut off.
DRAWN: tuple[str, ...] = (
    "crash",
    "restart",
    "pause",
    "pause",
    "stall",
    "cut",
    "cut",
    "cut1",
    "reset",
    "reset",
)
DRAWN += ("flip", "truncate", "slow", "drift", "master")
# How long after the run's own time the ordering probes go on sending (the faults are
# timed within the run's time and last up to 2.5 s).
PROBE_FOR = 3.0
SEND_FOR = {"ring": 0.3, "pipelined": 0.1, "stream": 0.05}


@dataclass(frozen=True)
class Schedule:
    seed: int
    model: str = "ring"
    slaves: int = 4
    plan: FaultPlan | None = None  # None: drawn from the seed (`draw_plan`)
    send_for: float = 0.0  # 0: the model's own (`SEND_FOR`): a few hundred messages
    wait_for: float = 0.2
    faults: bool = True  # whether a drawn plan has faults
    window: int = 8  # the stream model's: small, so that a schedule stays small
    discover: bool = False  # the master finds its slaves by SimpleLocalnet's multicast

    def __post_init__(self) -> None:
        if not self.send_for:
            object.__setattr__(self, "send_for", SEND_FOR.get(self.model, 0.3))

    def the_plan(self) -> FaultPlan:
        if self.plan is not None:
            return self.plan
        if not self.faults:
            return FaultPlan()
        names = [f"s{i + 1}" for i in range(self.slaves)]
        return draw_plan(random.Random(f"plan {self.seed}"), names, self.send_for + self.wait_for)

    def command(self) -> str:
        """The command that replays this schedule and prints its trace."""
        return (
            f"cloudy sim --model {self.model} --nodes {self.slaves} --seed {self.seed} "
            f"--send-for {self.send_for:g} --wait-for {self.wait_for:g} "
            f"--faults '{self.the_plan()}'{' --discover' * self.discover} --trace"
        )


@dataclass
class Outcome:
    schedule: Schedule
    plan: FaultPlan
    digest: str = ""
    violations: list[str] = field(default_factory=list)
    report: Report | None = None
    error: str | None = None  # the master's ExperimentError, said
    results: dict[str, tuple[int, float]] = field(default_factory=dict)
    virtual: float = 0.0
    cpu: float = 0.0
    sim: Sim | None = None  # kept when asked for (its trace, its logs)
    output: str = ""
    phase: str = ""  # the last phase the master entered ("SEND": the run began)
    members: list[str] = field(default_factory=list)  # the slaves in the run
    probes: Probes | None = None  # what the ordering probes saw (`testing.sim.probe`)

    @property
    def seed(self) -> int:
        return self.schedule.seed


def draw_plan(rng: random.Random, slaves: list[str], horizon: float) -> FaultPlan:
    """Up to three faults on the slaves (and now and then the master, ``m``), timed
    within *horizon* and lasting around a heartbeat timeout, so that they hit the
    detection and phase timeouts."""
    faults: list[Fault] = []
    for _ in range(rng.choice((0, 1, 1, 1, 2, 2, 3))):
        at = round(rng.uniform(0.0, horizon), 3)
        span = round(rng.uniform(0.1, 2.5), 3)
        one = rng.choice(slaves)
        others = tuple(s for s in slaves if s != one)
        kind = rng.choice(DRAWN)
        if kind == "master":
            kind, one = rng.choice(("crash", "pause", "stall", "cut")), "m"
            others = tuple(slaves)
        if kind in ("crash", "restart", "pause", "stall"):
            faults.append(Fault(kind, (one,), (), at, 0.0 if kind == "crash" else span))
        elif kind in ("cut", "cut1"):
            part = tuple(rng.sample(others, rng.randint(1, max(1, len(others) // 2))))
            faults.append(Fault(kind, (one,), part or others[:1], at, span))
        elif kind == "drift":
            faults.append(Fault("drift", (one,), value=round(rng.uniform(0.95, 1.05), 4)))
        elif others:
            b = (rng.choice(others),)
            value = round(rng.uniform(0.001, 0.05), 4) if kind == "slow" else 0.0
            faults.append(Fault(kind, (one,), b, at, span if kind == "slow" else 0.0, value))
    faults.sort(key=lambda f: f.at)
    return FaultPlan(tuple(faults))


def run_schedule(schedule: Schedule, *, keep: bool = False) -> Outcome:
    """Run *schedule* in a new `Sim` and check it (see the module's docstring)."""
    plan = schedule.the_plan()
    out = Outcome(schedule, plan)
    cpu = time.process_time()
    sink = io.StringIO()
    with (
        contextlib.redirect_stdout(sink),
        contextlib.redirect_stderr(sink),
        Sim(schedule.seed, latency=LATENCY) as sim,
    ):
        try:
            _run(sim, schedule, plan, out, sink)
        finally:
            out.output = sink.getvalue()
            out.virtual = sim.now
            out.digest = sim.digest
            if keep:
                out.sim = sim
    out.violations += violations(out, sim)
    if plan.faults and all(f.kind in TRANSIENT for f in plan.faults):
        out.violations += _progress(schedule, out)
    out.cpu = time.process_time() - cpu
    return out


def _progress(schedule: Schedule, out: Outcome) -> list[str]:
    """Whether transient faults cost at most `TRANSIENT_SHARE` of the messages (the
    same schedule without them is run to know)."""
    agreed = {count for count, _ in out.results.values()}
    clean = run_schedule(replace(schedule, plan=FaultPlan()))
    expected = {count for count, _ in clean.results.values()}
    if len(agreed) != 1 or len(expected) != 1:
        return []  # (said already: a run without results, or with two)
    (got,), (want,) = agreed, expected
    if got >= TRANSIENT_SHARE * want:
        return []
    return [f"transient faults cost the run {want - got} of its {want} messages ({got} agreed)"]


def _run(sim: Sim, schedule: Schedule, plan: FaultPlan, out: Outcome, sink: io.StringIO) -> None:
    s = schedule
    master = sim.add_node("m", rate=plan.drift("m"), discovery=s.discover)
    slaves = [
        sim.add_node(f"s{i + 1}", rate=plan.drift(f"s{i + 1}"), discovery=s.discover)
        for i in range(schedule.slaves)
    ]
    params = Params(s.send_for, s.wait_for, s.seed, model=s.model, window=s.window)
    ids = [s.node_id for s in slaves]
    out.probes = start_probes(sim, [master, *slaves], s.send_for + s.wait_for + PROBE_FOR)
    plan.apply(sim)

    def progress(phase: str, left: float, seen: int) -> None:
        if phase != out.phase:
            out.phase = phase
            sim.record("phase", phase)

    async def the_master() -> Report:
        nonlocal ids
        if master.backend is not None:  # as `cloudy master` does: find them first
            found = await master.backend.find_peers(DISCOVER_FOR)
            ids = [n for n in found if n != master.node_id]
            sim.record("found", [str(n) for n in ids])
        out.members = [n.name for n in slaves if n.node_id in ids]
        return await run_experiment(ids, params, progress)

    task = master.loop.create_task(master.node.run_process(the_master))
    try:
        sim.run_until(lambda: task.done() or master.crashed, limit=LIMIT)
    except SimTimeout as e:
        out.violations.append(f"the master did not finish: {e}")
        return
    if task.done():
        try:
            out.report = task.result()
        except ExperimentError as e:
            out.error = str(e)
            sim.record("error", str(e))
        except Exception as e:
            out.violations.append(f"the master failed: {type(e).__name__}: {e}")
    # every slave never killed gets its time to say its last word (its own deadlines)
    quiet = {str(n.node_id) for n in slaves if n.name in out.members}
    quiet -= {str(sim.nodes[f.a[0]].node_id) for f in plan.faults if f.kind in KILLS}
    waited = 0.0
    while waited < AFTERWARDS:
        text = sink.getvalue()
        quiet -= {node for node, _, _ in RESULT.findall(text)}
        quiet -= set(NO_RESULT.findall(text))
        if not quiet:
            break
        sim.run_for(0.5)
        waited += 0.5
    sim.run_for(1.0)  # (and then a little more: a second word would be a violation)
