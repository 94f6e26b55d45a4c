"""A slave belongs to one master at a time: the claim a slave controller grants.

A master about to run its program on a set of slaves first claims each (`Claim`); a
slave controller grants the claim when no other live master holds it, and refuses it
naming the holder otherwise (`ClaimReply`). The holder keeps it until it releases it
(`Release`) or is gone: the slave monitors it, so a master that ends, crashes or is
cut off past its heartbeat frees its slaves — its connection decides, as for every
other liveness question in cloudy. A new master on the address of a dead one is
another process (its pid's creation differs) and must claim anew.

This is what keeps two masters that find the same slaves (by DNS, say) from both
running over them: see `cloudy.backend.forming` for the masters' side.
"""

from __future__ import annotations

from .. import (
    Message,
    MonitorRef,
    NodeId,
    ProcessId,
    ProcessMonitorNotification,
    get_self_node,
    monitor,
    send,
    unmonitor,
)

__all__ = ["Claim", "ClaimReply", "Claims", "Release"]

_TAG = "cloudy.backend."


class Claim(Message, tag=_TAG + "Claim"):
    """A master asks a slave controller to be its slave (answered by `ClaimReply`)."""

    master: ProcessId


class ClaimReply(Message, tag=_TAG + "ClaimReply"):
    """A slave controller's answer to `Claim`: *granted*, or held by *holder*."""

    node: NodeId
    granted: bool
    holder: ProcessId | None = None


class Release(Message, tag=_TAG + "Release"):
    """A master lets go of a slave it claimed (no answer)."""

    master: ProcessId


class Claims:
    """A slave controller's side: who holds this slave, watched by a monitor."""

    def __init__(self) -> None:
        self.holder: ProcessId | None = None
        self._ref: MonitorRef | None = None

    def claim(self, msg: Claim) -> None:
        """Grant *msg*'s master this slave, unless another live master holds it."""
        me = get_self_node()
        if self.holder is not None and self.holder != msg.master:
            send(msg.master, ClaimReply(me, False, self.holder))
            return
        if self.holder is None:
            self.holder, self._ref = msg.master, monitor(msg.master)
        send(msg.master, ClaimReply(me, True, None))

    def release(self, msg: Release) -> None:
        if msg.master == self.holder:
            self._free()

    def holder_gone(self, msg: ProcessMonitorNotification) -> bool:
        """Whether *msg* tells that the holder has gone (the slave is free again)."""
        if self._ref is None or msg.ref != self._ref:
            return False
        self.holder, self._ref = None, None
        return True

    def _free(self) -> None:
        if self._ref is not None:
            unmonitor(self._ref)
        self.holder, self._ref = None, None
