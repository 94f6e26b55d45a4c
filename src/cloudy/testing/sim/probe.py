"""Ordering probes: processes that check, from inside a simulated cluster, what the
runtime promises about the messages from one process to another.

`start_probes` puts one probe process on each node given. Every `PERIOD`, for a while,
each probe sends the next of its numbers to the probes of the next half of the nodes
(in a circle: so that each pair of nodes has one probe sending, the other receiving),
and it checks what it receives by Cloud Haskell's rules for one sender and one
receiver:

* messages arrive in the order they were sent, none twice;
* once a message is lost, nothing the sender sends later arrives until it calls
  ``reconnect`` (the prefix rule: a receiver never sees a hole);
* a monitor fires at most once (each probe monitors the probes it sends to).

A probe never reconnects, so from each sender a receiver must see 0, 1, 2, ... and
then nothing more if the connection broke. Each broken rule is a line in
`Probes.violations`. The probes use only the public API: they are a workload like a
user's, so that a sweep of schedules checks these rules under every fault it draws.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ... import (
    Message,
    MonitorRef,
    ProcessId,
    ProcessMonitorNotification,
    clock,
    get_self_pid,
    match_any,
    monitor,
    receive_timeout,
    receive_wait,
    send,
)

if TYPE_CHECKING:
    from .cluster import Sim, SimNode

__all__ = ["PERIOD", "Numbered", "Probes", "start_probes"]

# Virtual seconds between a probe's rounds of sends.
PERIOD = 0.1


class Numbered(Message):
    """The *n*-th message of *sender* to one peer."""

    sender: ProcessId
    n: int


@dataclasses.dataclass
class Probes:
    """What the probes of one cluster saw."""

    pids: list[ProcessId] = dataclasses.field(default_factory=list)
    violations: list[str] = dataclasses.field(default_factory=list)
    delivered: int = 0  # numbered messages received, in all


def start_probes(sim: Sim, nodes: list[SimNode], seconds: float) -> Probes:
    """A probe on each of *nodes* (their peers: each other), sending for *seconds*;
    what they see. Each starts at its node's next turn: no virtual time passes here,
    so that a fault plan applied next is timed as if the probes were not there."""
    probes = Probes()
    for n in nodes:
        n.loop.call_soon(_start, n, probes, seconds)
    return probes


def _start(n: SimNode, probes: Probes, seconds: float) -> None:
    probes.pids.append(n.node.fork_process(_probe, probes, seconds))


async def _probe(probes: Probes, seconds: float) -> None:
    me = get_self_pid()
    peers: list[ProcessId] | None = None  # (every probe is started by our first round)
    sent = 0
    heard: dict[ProcessId, int] = {}  # the last number from each sender
    watching: dict[MonitorRef, ProcessId] = {}  # our monitors of our peers
    fired: set[MonitorRef] = set()
    due = clock.now() + PERIOD
    until = clock.now() + seconds
    while True:
        if due < until:
            msg = await receive_timeout(max(0.0, due - clock.now()), match_any())
        else:  # done sending: only listening
            msg = await receive_wait(match_any())
        if isinstance(msg, Numbered):
            probes.delivered += 1
            last = heard.get(msg.sender, -1)
            heard[msg.sender] = msg.n
            if msg.n != last + 1:
                what = "twice or out of order" if msg.n <= last else "after a hole"
                probes.violations.append(
                    f"{me} got {msg.sender}'s {msg.n} {what} (after its {last})"
                )
        elif isinstance(msg, ProcessMonitorNotification):
            if msg.ref in fired or msg.ref not in watching:
                why = "fired twice" if msg.ref in fired else "was never made"
                probes.violations.append(f"{me}: its monitor of {msg.pid} {why}")
            fired.add(msg.ref)
        if due < until and clock.now() >= due:
            due += PERIOD
            if peers is None:
                peers = _peers(probes.pids, me)
                watching.update((monitor(peer), peer) for peer in peers)
            for peer in peers:
                send(peer, Numbered(me, sent))
            sent += 1


def _peers(pids: list[ProcessId], me: ProcessId) -> list[ProcessId]:
    at = pids.index(me)
    return [pids[(at + k) % len(pids)] for k in range(1, len(pids) // 2 + 1)]
