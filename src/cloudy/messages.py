"""Messages the runtime itself sends to processes: exit reasons and notifications; and
what the node tells of itself and its processes (`ProcessInfo`, `NodeStats`)."""

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
    "NodeStats",
    "PeerStats",
    "ProcessInfo",
    "ProcessMonitorNotification",
    "ProcessSummary",
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
    """The process raised, was killed, or was told to exit; *message* says which, and
    *exit_reason* is the reason given to `exit` when that ended it (a string reason:
    ``"shutdown"``, say; None otherwise)."""

    message: str
    exit_reason: str | None = None


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
    *waiting*: what it is blocked in — ``"receive"`` (its mailbox), ``"receive_chan"``
    (a typed channel), ``"call"`` (a remote call or spawn), ``"drain"`` (waiting for a
    busy peer to take what it sent), ``"sleep"``, ``"other"`` (any other await) — or
    ``"running"`` (it is the one asking) or ``"ready"`` (about to run).
    *messages_in*: messages put in its mailbox (any dropped over a mailbox limit
    too); *messages_out*: messages it sent (`send`, `usend`, `nsend`, `nsend_remote`,
    `send_chan`, and each of `send_many`'s). Both count from the first time anyone
    asked this node about its processes (`get_process_info`, `get_process_infos`,
    ``cloudy ps``/``top``), or from the process's start if later: like the statistics
    Erlang's etop turns on, counting begins once watched, so a node nobody watches
    keeps its fastest local send.
    """

    node: NodeId
    names: list[str]
    mailbox_length: int
    monitors: list[tuple[ProcessId, MonitorRef]]
    links: list[ProcessId]
    waiting: str = ""
    messages_in: int = 0
    messages_out: int = 0


class ProcessSummary(Message):
    """One process of a node, as `get_process_infos` lists it."""

    pid: ProcessId
    info: ProcessInfo


class PeerStats(Message):
    """One connection of a node to a peer, in `NodeStats.peers`.

    *node*: the peer (before the handshake of a connection it opened, only its
    address is known: its host and the connection's port).
    *state*: ``"handshake"`` (not yet authenticated), ``"up"``, ``"busy"`` (more
    unsent bytes than the node's ``send_high_water``: its senders wait) or
    ``"closed"`` (lost: kept until the peer is back, a few of them).
    *silent_for*: seconds since any byte (a heartbeat tick at least) came from it.
    *heartbeat*: ``"ok"``; ``"late"`` when silent for over a heartbeat interval (two
    tick periods, two fifths of the heartbeat timeout: it missed a tick, if both nodes
    have the same timeout); ``"lost"`` when silent past the heartbeat timeout, or closed.
    The counts are of this connection: items (process messages and the nodes' own
    signals) and bytes, both ways. *link*: ``"tcp"``, or ``"unix"`` for a Unix
    socket (the peer runs on this machine; see `LocalNode`'s *local_sockets*).
    """

    node: NodeId
    state: str
    silent_for: float
    heartbeat: str
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    link: str = "tcp"


# its wire tag is the one it had in ``cloudy.introspection``: older nodes still read it
class NodeStats(Message, tag="cloudy.introspection.NodeStats"):
    """A node's counts: live processes, registered names, the monitors and links its
    processes hold, and its traffic since it started.

    *messages_in* / *messages_out*: items received from / sent to peers, all peers
    ever (process messages, and the nodes' own signals: monitors, spawns, replies);
    *bytes_in* / *bytes_out*: bytes read from / written to their connections;
    *peers*: one `PeerStats` per connection; *connection_losses*: peers lost (each
    loss once, however many connections it had); *heartbeats_missed*: times a peer
    was silent past a heartbeat interval; *frames_refused*: frames and connections
    refused, by reason (``"bad cookie"``, ``"version"``, ``"malformed handshake"``,
    ``"frame too large"``, ``"damaged frame"``, ``"handshake timeout"``,
    ``"too many handshakes"``, ``"undecodable"``, ``"undecodable message"``; ``"stale
    pid"``: messages, signals and replies addressed to another creation of this node,
    its own sends included); *creation*: which run of its address this node is (in
    every pid it makes: see `cloudy.identity`).
    """

    node: NodeId
    processes: int
    registered_names: int
    monitors: int
    links: int
    uptime: float = 0.0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    peers: list[PeerStats] = []
    connection_losses: int = 0
    heartbeats_missed: int = 0
    frames_refused: dict[str, int] = {}
    creation: int = 0
