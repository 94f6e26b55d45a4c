"""What every simulated run of the experiment must show: its invariants, each broken
one said in a line (see ``simulated.py``).

The simulator knows the truth a real cluster cannot: which node was frozen, killed
or cut off, and when. So beside what a user checks (results, the oracle, nobody
silent) it checks the runtime's own promises: no receiver saw a hole in a sender's
numbers (the prefix rule), and no node declared a peer lost that was neither
frozen, killed nor cut off from it (liveness judged only while our own loop is on
time, by bytes arriving).
"""

from __future__ import annotations

import re
from typing import Protocol

from ..testing.sim import Sim
from ..testing.sim.faults import Fault, FaultPlan
from ..testing.sim.probe import Probes
from .master import Report
from .result import expected_result

__all__ = ["KILLS", "NO_RESULT", "RESULT", "violations"]

RESULT = re.compile(r"^(nid://\S+) <(\d+), (\S+)>", re.M)
NO_RESULT = re.compile(r"^(nid://\S+)(?: has no agreed result|: the master has gone before)", re.M)
HOLE = re.compile(r"(pid://\S+): lost messages from position (\d+)")
DECLARED = re.compile(r"^\s*([\d.]+) (\S+)\s+WARNING\s+(nid://\S+) \(.*\) silent for")
# The faults after which a node owes no word: its state is gone.
KILLS = ("crash", "restart")
# How long before a declaration of loss the peer's silence may have begun: the
# heartbeat timeout plus a tick period and the path's latency.
SILENCE = 1.3


class Outcome(Protocol):
    """What a run left to check (`simulated.Outcome`); `results` is filled in here."""

    @property
    def seed(self) -> int: ...

    plan: FaultPlan
    phase: str
    output: str
    report: Report | None
    error: str | None
    results: dict[str, tuple[int, float]]
    members: list[str]  # the slaves in the run (the master found, or was given)
    probes: Probes | None  # what the ordering probes saw


def violations(out: Outcome, sim: Sim) -> list[str]:
    v: list[str] = []
    names = {str(n.node_id): n.name for n in sim.nodes.values()}
    _results(out, names, v)
    _silence(out, sim, v)
    _report(out, sim, v)
    _holes(out, names, v)
    _liveness(out.plan, sim, names, v)
    if out.probes is not None:
        v.extend(_named(line, names) for line in out.probes.violations)
    v.extend(f"unhandled in a node's loop: {e}" for e in sim.world.errors)
    return v


def _results(out: Outcome, names: dict[str, str], v: list[str]) -> None:
    seed = out.seed
    for node, count, total in RESULT.findall(out.output):
        name = names.get(node, node)
        if name in out.results:
            v.append(f"{name} printed two results")
        out.results[name] = (int(count), float(total))
        if float(total) != expected_result(seed, int(count)).sum:
            v.append(f"{name} printed <{count}, {total}>, not the oracle's sum for {count}")
    if len(set(out.results.values())) > 1:
        v.append(f"slaves printed different results (two cuts): {out.results}")


def _silence(out: Outcome, sim: Sim, v: list[str]) -> None:
    names = {str(n.node_id): n.name for n in sim.nodes.values()}
    spoke = set(out.results) | {names.get(n, n) for n in NO_RESULT.findall(out.output)}
    killed = {f.a[0] for f in out.plan.faults if f.kind in KILLS}
    began = out.phase not in ("", "START")  # (before SEND a slave has nothing to say)
    for n in sim.nodes.values():
        if began and n.name in out.members and n.name not in killed | spoke:
            v.append(f"{n.name} was never killed yet said neither its result nor why not")


def _report(out: Outcome, sim: Sim, v: list[str]) -> None:
    r = out.report
    if r is not None:
        if not r.agree:
            v.append(f"the master's report does not agree: {[(s.count, s.sum) for s in r.slaves]}")
        if r.sum != expected_result(out.seed, r.count).sum:
            v.append(f"the master reported <{r.count}, {r.sum}>, not the oracle's sum")
        if out.results and (r.count, r.sum) not in out.results.values():
            v.append(f"the master reported <{r.count}, {r.sum}>, no slave printed it")
    if not out.plan:
        if r is None:
            v.append(f"no fault, yet the master has no report ({out.error or 'it failed'})")
        elif len(out.results) != len(sim.nodes) - 1:
            v.append(f"no fault, yet only {sorted(out.results)} printed a result")
        if len(out.members) != len(sim.nodes) - 1:
            v.append(f"no fault, yet the master found only {out.members}")


def _named(line: str, names: dict[str, str]) -> str:
    """*line* with each node's address replaced by its name in the plan."""
    for node, name in names.items():
        line = line.replace(f"pid://{node.removeprefix('nid://')}:", f"{name}:")
    return line


def _holes(out: Outcome, names: dict[str, str], v: list[str]) -> None:
    for pid, position in HOLE.findall(out.output):
        node = pid.rsplit(":", 1)[0]
        who = names.get(node, node)
        v.append(f"{who} saw a hole in the numbers of position {position} (prefix rule)")


def _liveness(plan: FaultPlan, sim: Sim, names: dict[str, str], v: list[str]) -> None:
    for line in sim.world.logs:
        m = DECLARED.match(line)
        if m is None:
            continue
        at, who, peer = float(m[1]), m[2], names.get(m[3], m[3])
        if not any(_silences(f, peer, who, at) for f in plan.faults):
            v.append(f"{who} declared {peer} lost at {at:.3f} s, yet {peer} was up and reachable")


def _silences(f: Fault, peer: str, who: str, at: float) -> bool:
    """Whether fault *f* can have kept *peer* silent towards *who* in the heartbeat
    timeout before *at*."""
    start, end = f.at, f.at + f.span
    if f.kind == "crash":
        end = at
    if end < at - SILENCE or start > at:
        return False
    if f.kind in ("crash", "restart", "pause", "stall"):
        return peer in f.a
    if f.kind == "cut":
        return (peer in f.a and who in f.b) or (peer in f.b and who in f.a)
    if f.kind == "cut1":  # only the paths from the first set to the second are cut
        return peer in f.a and who in f.b
    return False
