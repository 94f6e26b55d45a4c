"""The exceptions cloudy raises. One root, `CloudyError`.

Local misuse (`ProcessError` family) is kept apart from what a peer did or what
the network did (`RemoteError` family), so that a caller can tell "you called it
wrong" from "it broke over there".
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .identity import NodeId, ProcessId
    from .messages import DiedReason

__all__ = [
    "CloudyError",
    "ConnectionRefusedByPeer",
    "EncodeError",
    "LocalProtocolError",
    "NodeClosedError",
    "NodeUnreachable",
    "NotChannelOwnerError",
    "NotInProcessError",
    "ProcessError",
    "ProcessExitException",
    "ProcessLinkException",
    "ProcessRegistrationException",
    "ProcessTerminationException",
    "ProtocolError",
    "RemoteCallError",
    "RemoteError",
    "SpawnError",
    "listen_error",
]


class CloudyError(Exception):
    """Root of every error cloudy raises."""


# --- local misuse ---------------------------------------------------------------


class ProcessError(CloudyError):
    """Local misuse: a call that cannot be served as made, whatever the network does."""


class NotInProcessError(ProcessError):
    """A process-API function was called outside a cloudy process."""


class ProcessRegistrationException(ProcessError):
    """`register` of a name already taken, or `unregister`/`reregister` of a free one."""


class EncodeError(ProcessError):
    """A message holds a value that cannot cross the wire (not plain data nor a Message)."""


class NodeClosedError(ProcessError):
    """A process was to be started on a node that is closing or closed."""


class NotChannelOwnerError(ProcessError):
    """`receive_chan` on a channel the calling process did not create."""


class LocalProtocolError(ProcessError):
    """A sans-IO protocol machine was driven out of order (a bug in its caller)."""


# --- signals raised inside a process --------------------------------------------


class ProcessExitException(CloudyError):
    """Raised inside a process that another process called `exit` on.

    ``sender`` is who asked; ``reason`` is what they gave. Catch it (or use
    `catch_exit`) to survive; left alone it ends the process.
    """

    def __init__(self, sender: ProcessId, reason: Any) -> None:
        super().__init__(f"exit from {sender}: {reason!r}")
        self.sender = sender
        self.reason = reason


class ProcessTerminationException(CloudyError):
    """Raised by `terminate` in the calling process: it ends, abnormally, unless it
    catches this (Cloud Haskell's ``ProcessTerminationException``)."""

    def __init__(self) -> None:
        super().__init__("terminated")


class ProcessLinkException(CloudyError):
    """Raised inside a process when a process it linked to ends abnormally."""

    def __init__(self, pid: ProcessId, reason: DiedReason) -> None:
        super().__init__(f"linked process {pid} died: {reason!r}")
        self.pid = pid
        self.reason = reason


# --- what a peer or the network did ----------------------------------------------


class RemoteError(CloudyError):
    """Something went wrong on another node or between us and it."""


class NodeUnreachable(RemoteError):
    """A node could not be reached (refused, timed out, lost, or failed to authenticate)."""

    def __init__(self, node: NodeId, cause: str) -> None:
        super().__init__(f"{node} is unreachable: {cause}")
        self.node = node
        self.cause = cause


class ConnectionRefusedByPeer(NodeUnreachable):
    """The peer answered but refused us: wrong cookie or another protocol version."""


class ProtocolError(RemoteError):
    """A peer sent bytes that break the protocol (bad frame, bad handshake)."""


class SpawnError(RemoteError):
    """A remote node refused to spawn a closure (unknown name, bad arguments)."""


class RemoteCallError(RemoteError):
    """A function run with `call` on another node raised; carries the remote's message."""

    def __init__(self, node: NodeId, message: str) -> None:
        super().__init__(f"on {node}: {message}")
        self.node = node
        self.remote_message = message


# --- saying why a port cannot be listened on -------------------------------------------


def listen_error(host: str, port: int, error: OSError, what: str = "") -> OSError:
    """*error* from listening on *host*:*port* (for *what*, if said), in one line with
    what to do instead (same errno; the line is its ``strerror``, and ``str`` without
    the ``[Errno N]``)."""
    where = f"cannot listen{what and ' for ' + what} on {host}:{port}"
    if isinstance(error, socket.gaierror):
        why = (
            f"{host!r} does not resolve ({error.strerror}); name this machine by an address "
            "(127.0.0.1) or by a name in /etc/hosts or DNS"
        )
    elif error.errno == errno.EADDRNOTAVAIL:
        why = (
            f"{host} is not an address of this machine; use 127.0.0.1 (this machine alone) "
            "or one of the addresses `hostname -I` lists"
        )
    elif error.errno == errno.EADDRINUSE:
        why = (
            f"port {port} is in use (address already in use); stop what holds it or "
            "choose another port (0 picks a free one)"
        )
    else:
        why = error.strerror or str(error)
    return _OneLine(error.errno, f"{where}: {why}")


class _OneLine(OSError):
    def __str__(self) -> str:
        return str(self.strerror)
