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
while a majority lives. The ring processes are children of a supervisor of the
master's (one_for_one, transient): one that is lost is started again on its node
once that is back (its heart restarts it); the new process says `Hello`, and during
SEND or GRACE it rejoins as a passive member (`slave.py` says what that means).

The report carries the run's timeline (`timeline`): each slave's agreed count over
time, the phases and the slaves lost and rejoined, in seconds since the run began.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import msgspec

from .. import (
    NodeId,
    ProcessId,
    ProcessMonitorNotification,
    clock,
    get_self_pid,
    match,
    match_any,
    receive_timeout,
    send,
)
from .. import exit as exit_process
from ..supervisor import ChildSpec, SupervisorError, start_supervisor, which_children
from .membership import ExperimentError, Membership
from .model import Model, get_model
from .protocol import (
    Agree,
    Hello,
    Outcome,
    Phase,
    PhaseAck,
    PhaseName,
    Poll,
    PollReply,
    Ready,
    Setup,
)
from .timeline import Event, Timeline

__all__ = ["ExperimentError", "Params", "Progress", "Report", "SlaveReport", "run_experiment"]

# How long a slave may take to answer the master's step (spawn, setup, phase change,
# result): generous, since a slave on a loaded machine may be busy draining messages.
STEP_TIMEOUT = 30.0
# How often the master asks for progress while it waits out a phase.
POLL_INTERVAL = 0.1
# How long the master stays after a run in which a slave was left out: one that wakes
# or whose node comes back may still finish, from the others' kept verdict.
LATE_WAIT = 5.0
# The ring's supervisor gives up after this many restarts per slave within a minute.
RESTARTS_PER_SLAVE = 5


class Params(msgspec.Struct, frozen=True):
    send_for: float
    wait_for: float
    seed: int
    model: str = "ring"
    tokens: int = 4  # the pipelined model's
    window: int = 0  # the stream model's (0: its default)


class SlaveReport(msgspec.Struct, frozen=True):
    node: str
    count: int
    sum: float
    cpu_s: float = 0.0
    ahead: int = 0  # the most it ran ahead of its approvals (the stream model's window)
    # its agreed count over time, on the run's clock (`timeline`); None: not collected
    # (an older slave)
    timeline: Timeline | None = None


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
    # slaves lost during the run whose node came back: their ring process rejoined
    rejoined: list[str] = msgspec.field(default_factory=list)
    # the phases and faults, on the run's clock (seconds since the run began)
    events: list[Event] = msgspec.field(default_factory=list)


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
    started = clock.now()  # the run's clock
    progress("START", 0.0, 0)
    sup, ring = await _start_ring(model, nodes, get_self_pid())
    try:
        return await _run(model, nodes, params, progress, ring, started)
    finally:
        exit_process(sup, "shutdown")  # stops a ring process that is still starting


async def _run(
    model: Model,
    nodes: list[NodeId],
    params: Params,
    progress: Progress,
    ring: list[ProcessId],
    started: float,
) -> Report:
    n = len(nodes)
    setup = Setup(
        get_self_pid(),
        ring,
        0,
        params.seed,
        int(params.send_for * 1e6),
        int(params.wait_for * 1e6),
        tokens=model.tokens(params.tokens),
        window=params.window,
    )
    monitors = Membership(ring, setup, model.rejoins, started, [str(node) for node in nodes])
    for pos, pid in enumerate(ring):
        send(pid, msgspec.structs.replace(setup, position=pos))
    monitors.setup_at = [monitors.now()] * n
    await _collect(Ready, n, monitors)

    await _phase(ring, PhaseName.SEND, monitors)
    monitors.rejoining = True
    started = clock.now()
    model.kickstart(ring, setup)
    seen = await _wait_out("SEND", started + params.send_for, monitors, progress, 0)
    grace = await _phase(ring, PhaseName.GRACE, monitors)
    send_time = clock.now() - started
    generated = max(a.generated for a in grace)
    until = clock.now() + params.wait_for
    await _wait_out("GRACE", until, monitors, progress, max(seen, generated))
    monitors.rejoining = False
    stop = await _phase(ring, PhaseName.STOP, monitors)
    agreed = min(a.prefix for a in stop)
    seen_at_stop = max(a.seen for a in stop)
    progress("STOP", 0.0, agreed)

    for pos in sorted(monitors.alive):
        send(ring[pos], Agree(agreed))
    # a slave ends (normally) right after it reports: that is no failure
    outcomes = await _collect(Outcome, n, monitors, finished=True)
    if monitors.lost:  # one left out may come back (woken, restarted) and finish late
        await _wait_for_late(monitors, LATE_WAIT)
    monitors.note("END")
    outcomes.sort(key=lambda o: o.position)
    results = [_slave_report(o, monitors.setup_at[o.position]) for o in outcomes]
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
        master_cpu_s=clock.cpu(),
        lost=[str(nodes[pos]) for pos in sorted(monitors.lost)],
        rejoined=[str(nodes[pos]) for pos in sorted(monitors.passive)],
        events=monitors.events,
    )


def _slave_report(o: Outcome, setup_at: float) -> SlaveReport:
    """A slave's `Outcome`, its timeline moved onto the run's clock (it counts from
    the slave's `Setup`, sent *setup_at* s into the run)."""
    timeline = None if o.timeline is None else o.timeline.shifted(setup_at)
    return SlaveReport(str(o.node), o.count, o.sum, o.cpu_s, o.ahead, timeline)


async def _start_ring(
    model: Model, nodes: list[NodeId], master: ProcessId
) -> tuple[ProcessId, list[ProcessId]]:
    """A supervisor of one ring process per node (in ring order), and their pids."""
    specs = [
        ChildSpec(
            str(pos),
            model.slave_closure(master, pos),
            node=node,
            restart="transient",
            shutdown="brutal_kill",
        )
        for pos, node in enumerate(nodes)
    ]
    try:
        intensity = RESTARTS_PER_SLAVE * len(nodes)
        sup = await start_supervisor(specs, intensity=intensity, period=60.0, link=False)
    except SupervisorError as e:
        raise ExperimentError(f"cannot start the {model.name} processes: {e}") from e
    pids = [child.pid for child in await which_children(sup)]
    if None in pids:  # (its node went as the ring started: the supervisor restarts it)
        gone = nodes[pids.index(None)]
        exit_process(sup, "shutdown")
        raise ExperimentError(f"the {model.name} process on {gone} ended as the run started")
    return sup, [pid for pid in pids if pid is not None]


async def _phase(ring: list[ProcessId], phase: PhaseName, members: Membership) -> list[PhaseAck]:
    members.phase = phase
    members.note(phase.name)
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
    members: Membership,
    accept: Callable[[P], bool] | None = None,
    what: str | None = None,
    finished: bool = False,
) -> list[P]:
    """One *tp* from every live slave; raise if a majority dies or time runs out.

    *finished*: a slave may end once it has sent its message (no failure then).
    """
    got: dict[int, P] = {}
    deadline = clock.now() + STEP_TIMEOUT
    while not members.alive <= got.keys():
        msg = await receive_timeout(
            deadline - clock.now(),
            match(tp),
            *MEMBERSHIP,
            match_any(_none),
        )
        if msg is None:
            if clock.now() >= deadline:
                missing = len(members.alive - got.keys())
                raise ExperimentError(
                    f"{missing} of {count} slaves did not answer "
                    f"({what or tp.__name__}) within {STEP_TIMEOUT:.0f} s"
                )
            continue
        if members.take(msg, set(got) if finished else set()):
            continue
        if isinstance(msg, tp) and (accept is None or accept(msg)):
            got[msg.position] = msg
    return [got[pos] for pos in sorted(members.alive)]


async def _wait_out(
    phase: str,
    until: float,
    members: Membership,
    progress: Progress,
    seen: int,
) -> int:
    """Wait until *until*, polling a live slave for progress; close the ring around
    a slave that dies.

    Returns the highest message index a slave said it had seen.
    """
    while True:
        now = clock.now()
        progress(phase, max(until - now, 0.0), seen)
        if now >= until:
            return seen
        send(members.probe(), Poll())
        tick = min(until, now + POLL_INTERVAL)
        while (rest := tick - clock.now()) > 0:
            msg = await receive_timeout(rest, *MEMBERSHIP, match(PollReply))
            if msg is None:
                break
            if members.take(msg, set()):
                continue
            if isinstance(msg, PollReply):
                seen = max(seen, msg.seen)


async def _wait_for_late(members: Membership, seconds: float) -> None:
    """Give a new ring process of a lost slave a (late) `Setup` for *seconds*."""
    deadline = clock.now() + seconds
    while (left := deadline - clock.now()) > 0:
        msg = await receive_timeout(left, match(Hello), match_any(_none))
        if isinstance(msg, Hello):
            members.hello(msg)


MEMBERSHIP = (match(ProcessMonitorNotification), match(Hello), match(Ready))


def _none(x: object) -> object:
    return None
