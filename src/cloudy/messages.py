"""Messages the runtime itself sends to processes: exit reasons and notifications."""

from __future__ import annotations

from .identity import MonitorRef, NodeId, ProcessId
from .message import Message

__all__ = [
    "AnyDiedReason",
    "DiedDisconnect",
    "DiedException",
    "DiedNodeDown",
    "DiedNormal",
    "DiedReason",
    "DiedUnknownId",
    "LogMessage",
    "NodeMonitorNotification",
    "ProcessInfo",
    "ProcessMonitorNotification",
    "WhereIsReply",
]


class DiedReason(Message):
    """Why a process (or our connection to its node) ended."""

    @property
    def abnormal(self) -> bool:
        """True for every reason but `DiedNormal`: what makes links fire."""
        return True


class DiedNormal(DiedReason):
    """The process's function returned."""

    @property
    def abnormal(self) -> bool:
        return False


class DiedException(DiedReason):
    """The process raised, was killed, or was told to exit; *message* says which."""

    message: str


class DiedDisconnect(DiedReason):
    """We lost the connection to the process's node (it may still be running)."""


class DiedNodeDown(DiedReason):
    """The process's node has shut down."""


class DiedUnknownId(DiedReason):
    """No such process: it never existed or had already ended when monitored."""


AnyDiedReason = DiedNormal | DiedException | DiedDisconnect | DiedNodeDown | DiedUnknownId
"""The declared type of a reason field: msgspec decodes each subclass by its tag."""


class ProcessMonitorNotification(Message):
    """Sent to a monitoring process when the monitored process ends."""

    ref: MonitorRef
    pid: ProcessId
    reason: AnyDiedReason


class NodeMonitorNotification(Message):
    """Sent to a process monitoring a node when the connection to it is lost."""

    ref: MonitorRef
    node: NodeId
    reason: AnyDiedReason


class WhereIsReply(Message):
    """The answer to `whereis_remote_async`: *pid* is None when *name* is not registered."""

    name: str
    pid: ProcessId | None


class LogMessage(Message):
    """A `say` line on its way to the node's ``"logger"`` process."""

    time: str
    pid: ProcessId
    text: str


class ProcessInfo(Message):
    """What `get_process_info` tells of a live process (Cloud Haskell's ``ProcessInfo``).

    *monitors*: who monitors it, with their refs; *links*: who is linked to it.
    """

    node: NodeId
    names: list[str]
    mailbox_length: int
    monitors: list[tuple[ProcessId, MonitorRef]]
    links: list[ProcessId]
