"""Fault plans: a small, printable value saying which faults hit which nodes when.

A plan is a list of `Fault`s; its text form, one fault a word, reads back with
`FaultPlan.parse`, so that a failing run's plan can be given on a command line::

    crash:s2@0.31           kill -9 s2 at 0.31 s (virtual)
    restart:s2@0.31+0.5     kill it, and start it again (new incarnation) 0.5 s later
    pause:s1@0.2+1.5        SIGSTOP s1 for 1.5 s
    stall:s1@0.2+1.5        s1's next turn that runs a timer takes 1.5 s (a long callback)
    cut:s1/s2,s3@0.3+2      partition s1 from s2 and s3, both ways, for 2 s
    cut1:s1/s2@0.3+2        ... one way only (s1's segments to s2 are held)
    reset:s1/s2@0.4         reset every connection between s1 and s2
    flip:s1/s2@0.4          flip one bit of the next bytes s1 sends s2
    truncate:s1/s2@0.4      cut the next bytes short, then reset
    slow:s1/s2@0.1+0.5=0.02 add 20 ms to every segment s1 sends s2, for 0.5 s
    drift:s1=1.001          s1's clock runs 0.1 % fast (from its start)

`apply` schedules a plan's faults on a `Sim`, relative to the moment it is applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .cluster import Sim

__all__ = ["KINDS", "Fault", "FaultPlan", "PlanError"]

KINDS = (
    "crash",
    "restart",
    "pause",
    "stall",
    "cut",
    "cut1",
    "reset",
    "flip",
    "truncate",
    "slow",
    "drift",
)
_WORD = re.compile(
    r"^(?P<kind>[a-z0-9]+):(?P<a>[\w.-]+(?:,[\w.-]+)*)(?:/(?P<b>[\w.-]+(?:,[\w.-]+)*))?"
    r"(?:@(?P<at>[\d.]+)(?:\+(?P<span>[\d.]+))?)?(?:=(?P<value>[\d.]+))?$"
)
_PAIRED = ("cut", "cut1", "reset", "flip", "truncate", "slow")


class PlanError(ValueError):
    """A fault plan's text does not read."""


@dataclass(frozen=True)
class Fault:
    kind: str
    a: tuple[str, ...]
    b: tuple[str, ...] = ()
    at: float = 0.0
    span: float = 0.0
    value: float = 0.0

    def __str__(self) -> str:
        text = f"{self.kind}:{','.join(self.a)}"
        if self.b:
            text += "/" + ",".join(self.b)
        if self.kind != "drift":
            text += f"@{self.at:g}"
        if self.span:
            text += f"+{self.span:g}"
        if self.value:
            text += f"={self.value:g}"
        return text


@dataclass(frozen=True)
class FaultPlan:
    faults: tuple[Fault, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return " ".join(map(str, self.faults)) or "none"

    def __bool__(self) -> bool:
        return bool(self.faults)

    @classmethod
    def parse(cls, text: str) -> FaultPlan:
        """The plan *text* says (`str` of a plan reads back as the same plan)."""
        faults = []
        for word in text.split():
            if word == "none":
                continue
            m = _WORD.match(word)
            if m is None or m["kind"] not in KINDS:
                raise PlanError(f"cannot read the fault {word!r} (e.g. crash:s2@0.3)")
            kind, b = m["kind"], tuple(m["b"].split(",")) if m["b"] else ()
            if (kind in _PAIRED) != bool(b):
                sets = "two sets of nodes (a/b)" if kind in _PAIRED else "one set of nodes"
                raise PlanError(f"{word!r}: {kind} takes {sets}")
            faults.append(
                Fault(
                    kind,
                    tuple(m["a"].split(",")),
                    b,
                    float(m["at"] or 0),
                    float(m["span"] or 0),
                    float(m["value"] or 0),
                )
            )
        return cls(tuple(faults))

    def drift(self, name: str) -> float:
        """The clock rate the plan gives node *name* (1.0: none)."""
        rates = [f.value for f in self.faults if f.kind == "drift" and name in f.a]
        return rates[-1] if rates else 1.0

    def apply(self, sim: Sim) -> None:
        """Schedule every fault (but drift, which a node takes at its start) on *sim*,
        at its time from now. Names not in *sim* are an error."""
        for f in self.faults:
            for name in (*f.a, *f.b):
                if name not in sim.nodes:
                    raise PlanError(f"{f}: no node {name!r} (nodes: {', '.join(sim.nodes)})")
            if f.kind != "drift":
                sim.world.after(f.at, _start, sim, f)


def _start(sim: Sim, f: Fault) -> None:
    a = [sim.nodes[n] for n in f.a]
    b = [sim.nodes[n] for n in f.b]
    after = sim.world.after
    if f.kind == "crash":
        for n in a:
            sim.crash(n)
    elif f.kind == "restart":
        for n in a:
            sim.crash(n)
            after(f.span, sim.restart, n)
    elif f.kind == "pause":
        for n in a:
            sim.pause(n)
            after(f.span, sim.resume, n)
    elif f.kind == "stall":
        for n in a:
            sim.stall(n, f.span)
    elif f.kind in ("cut", "cut1"):
        oneway = f.kind == "cut1"
        sim.partition(a, b, oneway=oneway)
        after(f.span, lambda: sim.heal(a, b, oneway=oneway))
    elif f.kind == "reset":
        for x in a:
            for y in b:
                sim.reset(x, y)
    elif f.kind in ("flip", "truncate"):
        for x in a:
            for y in b:
                sim.damage(x, y, f.kind)
    elif f.kind == "slow":
        for x in a:
            for y in b:
                sim.slow(x, y, f.value)
                after(f.span, sim.slow, x, y, 0.0)
