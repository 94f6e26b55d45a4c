"""A slave's run process taking over its node for a run (a part of `run.py`)."""

from __future__ import annotations

import sys

from .. import (
    ProcessExitException,
    ProcessId,
    ProcessMonitorNotification,
    get_self_node,
    get_self_pid,
    match_if,
    monitor,
    receive_timeout,
    receive_wait,
    register,
    reregister,
    say,
    send,
    unmonitor,
    whereis,
)
from .. import exit as exit_process
from .protocol import Hello, PhaseName, Setup

__all__ = ["REPLACED", "RING_NAME", "join_run"]

# The name a slave's run process has on its node, and the reason it gives a former self.
RING_NAME = "cloudy.ring"
REPLACED = "replaced"


def _name(name: str, pid: ProcessId) -> None:
    if whereis(name) is None:
        register(name, pid)
    else:
        reregister(name, pid)


async def join_run(master: ProcessId, position: int) -> Setup | None:
    """Make this the run process of this node for *master*'s run, say `Hello`, and
    wait for the `Setup` (None: replaced before it came).

    A former run process of the same run (frozen, declared lost, then woken) is
    ended once the master gives this one a `Setup` to rejoin: it learns it was
    replaced. If the run is past rejoining and the former self is alive, it finishes
    late by itself (`SlaveRun`) and this one ends; otherwise this one finishes late.
    One of another run — its master died and it is finishing that run alone — is
    waited for: a new master finds the slave busy and waits until it has printed its
    result.
    """
    me = get_self_pid()
    run = f"{RING_NAME}@{master}"
    former = whereis(run)
    watch = None if former is None else monitor(former)
    _name(run, me)
    other = whereis(RING_NAME)
    if other is not None and other != former:
        say(f"this slave is still finishing another run ({other}): waiting for it")
        ref = monitor(other)
        await receive_wait(match_if(ProcessMonitorNotification, lambda n: n.ref == ref))
    _name(RING_NAME, me)
    # a master that goes before our Setup comes (it ended, or declared us lost while
    # we were frozen) would leave us waiting for ever, holding this node from every
    # later run: we watch it meanwhile
    master_ref = monitor(master)
    send(master, Hello(position, me))
    try:
        got = await receive_wait(
            match_if(Setup, lambda _: True),
            match_if(ProcessMonitorNotification, lambda n: n.ref == master_ref),
        )
    except ProcessExitException as e:
        if e.reason != REPLACED:
            raise
        return None
    if not isinstance(got, Setup):
        sys.stderr.write(
            f"{get_self_node()}: the master has gone before SEND "
            "(it ended, or we were cut off from it)\n"
        )
        sys.stderr.flush()
        return None
    setup = got
    unmonitor(master_ref)  # (the run watches its master itself)
    await receive_timeout(0, match_if(ProcessMonitorNotification, lambda n: n.ref == master_ref))
    if former is not None and watch is not None:
        gone = await receive_timeout(
            0, match_if(ProcessMonitorNotification, lambda n: n.ref == watch)
        )
        if gone is None and setup.phase == PhaseName.STOP:
            return None  # too late to rejoin: the former self, alive, finishes late itself
        exit_process(former, REPLACED)  # it rejoins for its former self: that one is over
    return setup
