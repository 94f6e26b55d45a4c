"""A master forms its cluster: enough slaves, a set that holds still, each one claimed.

The rules (Akka's Cluster Bootstrap has the first two; the third is what keeps two
masters from splitting a cluster, which Bootstrap's users still see after rolling
deploys):

1. **Enough.** With *want*, a master forms only once that many slaves answer; with
   *at_least_one* (a master that finds by DNS), never with none: an empty or failing
   lookup is not a cluster.
2. **Stable.** The slaves it would take must have stayed the same for *stable_for*
   seconds of discovery rounds: a set still growing at start (pods appearing, DNS
   answering slowly, a partition healing) is waited for, not taken half-formed.
3. **Claimed.** It then claims every slave it takes (`cloudy.backend.claims`): a slave
   serves one live master at a time. Refused by a slave that another master holds, it
   gives way if that master ranks first (the lower address, then creation) — letting
   go of all it holds — and otherwise keeps what it holds and asks again next round,
   so that of two masters after the same slaves the first in rank forms and the other
   does not. A master that cannot form within *within* seconds says why and ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from .. import (
    CloudyError,
    NodeId,
    NodeMonitorNotification,
    ProcessId,
    clock,
    get_self_pid,
    match_if,
    monitor_node,
    receive_timeout,
    send,
    unmonitor_node,
)
from .claims import Claim, ClaimReply, Release

__all__ = ["ROUND", "Forming", "form", "ranks_first"]

# The shortest discovery round: a round that finds its slaves at once (static or DNS
# peers) waits out the rest of it, so that rounds measure time rather than spin.
ROUND = 0.5
# How long a master waits for its claims to be answered: a node's connect timeout.
CLAIM_TIMEOUT = 5.0


def ranks_first(a: ProcessId, b: ProcessId) -> bool:
    """Whether master *a* comes before master *b* when both claim the same slave."""
    return (a.node.host, a.node.port, a.creation) < (b.node.host, b.node.port, b.creation)


@dataclass(frozen=True)
class Forming:
    """What a master waits for before it forms (see the module's rules)."""

    want: int | None = None
    stable_for: float = 0.0
    within: float = 30.0
    at_least_one: bool = False

    def enough(self, found: int) -> bool:
        if self.want is not None:
            return found >= self.want
        return found > 0 or not self.at_least_one


@dataclass
class _Progress:
    """Where one master's forming stands: the slaves it holds, and why the last round
    did not form (for the error at the end)."""

    held: dict[NodeId, ProcessId] = field(default_factory=dict)
    why: str = ""


async def form(
    find: Callable[[], Awaitable[list[ProcessId]]],
    rules: Forming,
    *,
    on_wait: Callable[[], None] | None = None,
    on_found: Callable[[int], None] | None = None,
    explain: Callable[[], str] = str,
) -> list[ProcessId]:
    """The slave controllers this master forms with, claimed (call it in a process).

    *find* gives the slave controllers answering now, in order; *on_wait* is called
    before each round (it may raise to give up), *on_found* after it with the count.
    Raises `CloudyError` when it cannot form within ``rules.within`` seconds, with
    *explain*'s hints when too few slaves were found.
    """
    me = get_self_pid()
    start = clock.now()
    deadline = start + rules.within
    last: tuple[NodeId, ...] | None = None
    since = start
    found: list[ProcessId] = []
    state = _Progress()
    while True:
        if on_wait is not None:
            on_wait()
        began = clock.now()
        found = await find()
        if on_found is not None:
            on_found(len(found))
        chosen = found if rules.want is None else found[: rules.want]
        key = tuple(p.node for p in chosen)
        now = clock.now()
        if key != last:
            last, since = key, now
        if not rules.enough(len(found)):
            state.why = "few"
        elif now - since < rules.stable_for:
            state.why = "unstable"
        elif await _claim(me, chosen, state):
            for node in [n for n in state.held if n not in key]:
                send(state.held.pop(node), Release(me))
            return chosen
        if clock.now() >= deadline:
            _release_all(me, state)
            raise CloudyError(_failure(rules, state.why, len(found), explain))
        left = ROUND - (clock.now() - began)
        if left > 0:
            await asyncio.sleep(min(left, max(deadline - clock.now(), 0.0)))


async def _claim(me: ProcessId, chosen: list[ProcessId], state: _Progress) -> bool:
    """Claim the slaves of *chosen* not yet held; whether all of them are held now."""
    asking = {pid.node: pid for pid in chosen if pid.node not in state.held}
    refs = {monitor_node(node): node for node in asking}
    for pid in asking.values():
        send(pid, Claim(me))
    holders: list[ProcessId] = []
    lost = False
    pending = set(asking)
    while pending:
        msg = await receive_timeout(
            CLAIM_TIMEOUT,
            match_if(ClaimReply, lambda m: m.node in pending),
            match_if(NodeMonitorNotification, lambda m: m.ref in refs),
        )
        if msg is None:
            lost = True
            break
        if isinstance(msg, NodeMonitorNotification):
            pending.discard(refs[msg.ref])
            lost = True
            continue
        pending.discard(msg.node)
        if msg.granted:
            state.held[msg.node] = asking[msg.node]
        elif msg.holder is not None:
            holders.append(msg.holder)
    for ref in refs:
        unmonitor_node(ref)
    if holders:
        state.why = "held:" + ",".join(sorted({str(h.node) for h in holders}))
        if any(ranks_first(h, me) for h in holders):
            _release_all(me, state)  # it ranks first: give way
        return False
    if lost:
        state.why = "lost"
        return False
    return all(pid.node in state.held for pid in chosen)


def _release_all(me: ProcessId, state: _Progress) -> None:
    for pid in state.held.values():
        send(pid, Release(me))
    state.held.clear()


def _failure(rules: Forming, why: str, found: int, explain: Callable[[], str]) -> str:
    within = f"within {rules.within:g} s"
    if why.startswith("held:"):
        return (
            f"another master holds slaves this one needs ({why[5:]}) {within}: "
            "a slave serves one master at a time"
        )
    if why == "unstable":
        return (
            f"the slaves found kept changing for {rules.within:g} s "
            f"(they must hold still for {rules.stable_for:g} s)"
        )
    if why == "lost":
        return f"slaves were lost while being claimed, again and again, {within}"
    want = rules.want if rules.want is not None else 1
    return f"found {found} of {want} slaves {within}\n" + explain()
