"""What a supervisor is told and reports: child specs, their state, the answers of
`which_children` and `count_children`, and `SupervisorError`."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import (
    Closure,
    CloudyError,
    DiedException,
    DiedNormal,
    DiedReason,
    Message,
    MonitorRef,
    NodeId,
    ProcessId,
)

__all__ = [
    "MAX_INTENSITY_REASON",
    "NORMAL_EXITS",
    "RETRY_AFTER",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ChildState",
    "Kind",
    "Restart",
    "Strategy",
    "SupervisorError",
    "is_normal_end",
    "validate",
]

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
Kind = Literal["worker", "supervisor"]
STRATEGIES = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS = ("permanent", "transient", "temporary")


class SupervisorError(CloudyError):
    """A supervisor refused a request, could not start, or gave up (its message says which)."""


@dataclass(frozen=True)
class ChildSpec:
    """How a supervisor starts and treats one child (OTP's child specification).

    *start* is either a local async function, started with ``spawn_local(start, *args)``,
    or a `Closure`, started with ``spawn(node, start)`` on *node* (a `NodeId`, or a
    list of them tried in order). *restart*: ``"permanent"`` children are always
    restarted, ``"transient"`` ones only after an abnormal end, ``"temporary"`` ones
    never (and their spec is dropped when they end). *shutdown*: seconds to wait after
    ``exit(pid, "shutdown")`` before `kill` (``math.inf``: wait for ever), or
    ``"brutal_kill"`` to kill at once. *kind* is what `count_children` counts.

    Specs are passed to the supervisor by reference, so `start_child` works only from
    the supervisor's own node (a local function cannot cross the wire).
    """

    id: str
    start: Callable[..., Awaitable[Any]] | Closure
    args: tuple[Any, ...] = ()
    node: NodeId | Sequence[NodeId] | None = None
    restart: Restart = "permanent"
    shutdown: float | Literal["brutal_kill"] = 5.0
    kind: Kind = "worker"
    nodes: tuple[NodeId, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        nodes: tuple[NodeId, ...] = ()
        if isinstance(self.node, NodeId):
            nodes = (self.node,)
        elif self.node is not None:
            nodes = tuple(self.node)
        object.__setattr__(self, "nodes", nodes)
        if isinstance(self.start, Closure):
            if not nodes:
                raise SupervisorError(f"child {self.id!r}: a Closure needs a node to run on")
            if self.args:
                raise SupervisorError(f"child {self.id!r}: a Closure carries its own args")
        elif not callable(self.start):
            raise SupervisorError(f"child {self.id!r}: start must be a function or a Closure")
        elif nodes:
            raise SupervisorError(f"child {self.id!r}: a local function takes no node")
        if self.restart not in RESTARTS:
            raise SupervisorError(f"child {self.id!r}: restart must be one of {RESTARTS}")
        if self.kind not in ("worker", "supervisor"):
            raise SupervisorError(f"child {self.id!r}: kind must be 'worker' or 'supervisor'")
        if self.shutdown != "brutal_kill" and not (
            isinstance(self.shutdown, int | float) and self.shutdown >= 0
        ):
            raise SupervisorError(
                f"child {self.id!r}: shutdown must be seconds >= 0, math.inf or 'brutal_kill'"
            )

    @property
    def remote(self) -> bool:
        return isinstance(self.start, Closure)


def validate(children: Sequence[ChildSpec], strategy: str, intensity: int, period: float) -> None:
    """Raise `SupervisorError` for flags or a child list a supervisor cannot run with."""
    if strategy not in STRATEGIES:
        raise SupervisorError(f"strategy must be one of {STRATEGIES}, not {strategy!r}")
    if not isinstance(intensity, int) or intensity < 0:
        raise SupervisorError(f"intensity must be an int >= 0, not {intensity!r}")
    if not (period > 0 and math.isfinite(period)):
        raise SupervisorError(f"period must be a number of seconds > 0, not {period!r}")
    seen: set[str] = set()
    for spec in children:
        if not isinstance(spec, ChildSpec):
            raise SupervisorError(f"not a ChildSpec: {spec!r}")
        if spec.id in seen:
            raise SupervisorError(f"duplicate child id {spec.id!r}")
        seen.add(spec.id)


MAX_INTENSITY_REASON = "shutdown: reached max restart intensity"
# Seconds between attempts to restart a remote child none of whose nodes could be reached.
RETRY_AFTER = 0.5
# The reasons given to `exit` that end a transient child normally (as in OTP).
NORMAL_EXITS = ("shutdown", "normal")


@dataclass(eq=False)
class ChildState:
    spec: ChildSpec
    pid: ProcessId | None = None
    ref: MonitorRef | None = None
    node_index: int = 0  # in spec.nodes: where it runs, or ran last
    retry_at: float | None = None  # waiting to be restarted on a node that can be reached


def is_normal_end(reason: DiedReason) -> bool:
    """A normal end for a transient child: returned, or ended by an exit signal whose
    reason is "shutdown" or "normal" (read from the reason's data, never its text)."""
    if isinstance(reason, DiedNormal):
        return True
    return isinstance(reason, DiedException) and reason.exit_reason in NORMAL_EXITS


class ChildInfo(Message):
    """One child as `which_children` reports it: *pid* is None while it is not running."""

    id: str
    pid: ProcessId | None
    restart: str
    kind: str = "worker"


class ChildCounts(Message):
    """`count_children`: specs held, children running, and specs of each kind."""

    specs: int
    active: int
    supervisors: int
    workers: int
