"""The master: orders the slaves into a ring, moves them through the phases, agrees.

START  spawn one slave process per node (ring order = node id order), send `Setup`.
SEND   every slave acknowledges SEND, then the model's kickstart; wait *send_for*.
GRACE  every slave acknowledges GRACE (and says the highest index it generated,
       after which it generates nothing); wait *wait_for* while confirmations and
       approvals settle.
STOP   every slave acknowledges STOP with its approved prefix; the agreed set is
       1..min(prefix), which every slave has approved; `Agree` makes each slave
       compute, print and report its result over exactly that set.

Phases are moved by messages only: nothing depends on the slaves' clocks. A slave
that dies is left out: the others are told (`Members`) and close the ring around it,
while a majority lives.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import msgspec

from .. import (
    CloudyError,
    NodeId,
    ProcessId,
    ProcessMonitorNotification,
    get_self_pid,
    match,
    match_any,
    monitor,
    receive_timeout,
    send,
    spawn,
)
from .model import Model, get_model
from .protocol import (
    Agree,
    Members,
    Outcome,
    Phase,
    PhaseAck,
    PhaseName,
    Poll,
    PollReply,
    Ready,
    Setup,
)

__all__ = ["ExperimentError", "Params", "Progress", "Report", "SlaveReport", "run_experiment"]

# How long a slave may take to answer the master's step (spawn, setup, phase change,
# result): generous, since a slave on a loaded machine may be busy draining messages.
STEP_TIMEOUT = 30.0
# How often the master asks for progress while it waits out a phase.
POLL_INTERVAL = 0.1


class ExperimentError(CloudyError):
    """The run could not finish: a slave died, did not answer, or could not be spawned."""


class Params(msgspec.Struct, frozen=True):
    send_for: float
    wait_for: float
    seed: int
    model: str = "ring"


class SlaveReport(msgspec.Struct, frozen=True):
    node: str
    count: int
    sum: float
    cpu_s: float = 0.0


class Report(msgspec.Struct, frozen=True):
    slaves: list[SlaveReport]
    agree: bool
    count: int
    sum: float
    send_for: float
    wait_for: float
    seed: int
    msgs_per_s: float
    model: str = "ring"
    # the highest index any slave generated (said when entering GRACE), and the
    # highest any slave had received by STOP: equal when nothing was generated late
    generated: int = 0
    seen_at_stop: int = 0
    master_cpu_s: float = 0.0
    # slaves that died during the run (the others closed the ring around them)
    lost: list[str] = msgspec.field(default_factory=list)


Progress = Callable[[str, float, int], None]
"""``progress(phase, seconds_left, messages_so_far)``: called a few times a second."""


def _no_progress(phase: str, left: float, seen: int) -> None:
    pass


async def run_experiment(
    slaves: list[NodeId], params: Params, progress: Progress = _no_progress
) -> Report:
    """Run the experiment on *slaves* (inside a process) and return every slave's result.

    Raises `ExperimentError` when there are no slaves, fewer than a majority of them
    live on, or one does not answer. A slave that dies is left out (`Report.lost`).
    """
    if not slaves:
        raise ExperimentError("no slaves to run the experiment on")
    model = get_model(params.model)
    nodes = sorted(slaves, key=lambda n: (n.host, n.port))
    n = len(nodes)
    me = get_self_pid()

    progress("START", 0.0, 0)
    ring = await _spawn_all(model, nodes)
    monitors = _Members(ring, nodes)
    for pos, pid in enumerate(ring):
        send(
            pid,
            Setup(
                me, ring, pos, params.seed, int(params.send_for * 1e6), int(params.wait_for * 1e6)
            ),
        )
    await _collect(Ready, n, monitors)

    await _phase(ring, PhaseName.SEND, monitors)
    started = time.monotonic()
    model.kickstart(ring)
    seen = await _wait_out("SEND", started + params.send_for, monitors, progress, 0)
    grace = await _phase(ring, PhaseName.GRACE, monitors)
    send_time = time.monotonic() - started
    generated = max(a.generated for a in grace)
    until = time.monotonic() + params.wait_for
    await _wait_out("GRACE", until, monitors, progress, max(seen, generated))
    stop = await _phase(ring, PhaseName.STOP, monitors)
    agreed = min(a.prefix for a in stop)
    seen_at_stop = max(a.seen for a in stop)
    progress("STOP", 0.0, agreed)

    for pos in sorted(monitors.alive):
        send(ring[pos], Agree(agreed))
    # a slave ends (normally) right after it reports: that is no failure
    outcomes = await _collect(Outcome, n, monitors, finished=True)
    outcomes.sort(key=lambda o: o.position)
    results = [SlaveReport(str(o.node), o.count, o.sum, o.cpu_s) for o in outcomes]
    first = results[0]
    agree = all(r.count == first.count and r.sum == first.sum for r in results)
    return Report(
        slaves=results,
        agree=agree,
        count=first.count,
        sum=first.sum,
        send_for=params.send_for,
        wait_for=params.wait_for,
        seed=params.seed,
        msgs_per_s=agreed / send_time if send_time > 0 else 0.0,
        model=model.name,
        generated=generated,
        seen_at_stop=seen_at_stop,
        master_cpu_s=time.process_time(),
        lost=[str(nodes[pos]) for pos in sorted(monitors.lost)],
    )


async def _spawn_all(model: Model, nodes: list[NodeId]) -> list[ProcessId]:
    ring = []
    for node in nodes:
        try:
            ring.append(await spawn(node, model.slave_closure()))
        except CloudyError as e:
            raise ExperimentError(f"cannot start the {model.name} process on {node}: {e}") from e
    return ring


class _Members:
    """The ring's live slaves as the master sees them; a death closes the ring around
    the dead one (`Members` to the others) while a majority of the slaves lives."""

    def __init__(self, ring: list[ProcessId], nodes: list[NodeId]) -> None:
        self.ring = ring
        self.alive = set(range(len(ring)))
        self.lost: set[int] = set()
        self.refs = {monitor(pid): pos for pos, pid in enumerate(ring)}

    def died(self, note: ProcessMonitorNotification, answered: set[int]) -> None:
        pos = self.refs.get(note.ref)
        if pos is None or pos not in self.alive or pos in answered:
            return  # not a slave, already known, or it ended after its last answer
        self.alive.discard(pos)
        self.lost.add(pos)
        if len(self.alive) < len(self.ring) // 2 + 1:
            raise ExperimentError(
                f"slave process {note.pid} ended ({note.reason!r}): "
                f"{len(self.alive)} of {len(self.ring)} slaves left, not a majority"
            )
        for p in self.alive:
            send(self.ring[p], Members(sorted(self.alive)))

    def probe(self) -> ProcessId:
        return self.ring[min(self.alive)]


async def _phase(ring: list[ProcessId], phase: PhaseName, members: _Members) -> list[PhaseAck]:
    for pos in sorted(members.alive):
        send(ring[pos], Phase(phase))
    return await _collect(
        PhaseAck, len(ring), members, lambda a: a.phase == phase, f"entering {phase.name}"
    )


class _Positioned(Protocol):
    position: int


P = TypeVar("P", bound=_Positioned)


async def _collect(
    tp: type[P],
    count: int,
    members: _Members,
    accept: Callable[[P], bool] | None = None,
    what: str | None = None,
    finished: bool = False,
) -> list[P]:
    """One *tp* from every live slave; raise if a majority dies or time runs out.

    *finished*: a slave may end once it has sent its message (no failure then).
    """
    got: dict[int, P] = {}
    deadline = time.monotonic() + STEP_TIMEOUT
    while not members.alive <= got.keys():
        msg = await receive_timeout(
            deadline - time.monotonic(),
            match(tp, _same),
            match(ProcessMonitorNotification, _same),
            match_any(_none),
        )
        if msg is None:
            if time.monotonic() >= deadline:
                missing = len(members.alive - got.keys())
                raise ExperimentError(
                    f"{missing} of {count} slaves did not answer "
                    f"({what or tp.__name__}) within {STEP_TIMEOUT:.0f} s"
                )
            continue
        if isinstance(msg, ProcessMonitorNotification):
            members.died(msg, set(got) if finished else set())
            continue
        if isinstance(msg, tp) and (accept is None or accept(msg)):
            got[msg.position] = msg
    return [got[pos] for pos in sorted(members.alive)]


async def _wait_out(
    phase: str,
    until: float,
    members: _Members,
    progress: Progress,
    seen: int,
) -> int:
    """Wait until *until*, polling a live slave for progress; close the ring around
    a slave that dies.

    Returns the highest message index a slave said it had seen.
    """
    while True:
        now = time.monotonic()
        progress(phase, max(until - now, 0.0), seen)
        if now >= until:
            return seen
        send(members.probe(), Poll())
        tick = min(until, now + POLL_INTERVAL)
        while (rest := tick - time.monotonic()) > 0:
            msg = await receive_timeout(
                rest,
                match(ProcessMonitorNotification, _same),
                match(PollReply, _same),
            )
            if msg is None:
                break
            if isinstance(msg, ProcessMonitorNotification):
                members.died(msg, set())
            elif isinstance(msg, PollReply):
                seen = max(seen, msg.seen)


def _same(x: object) -> object:
    return x


def _none(x: object) -> object:
    return None
