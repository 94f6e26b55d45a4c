"""Same-host links: a Unix socket beside the TCP port, found by the node's address.

Theory of operation
-------------------
A node listening on TCP *host*:*port* also listens on the Linux abstract Unix
socket named ``cloudy/host:port`` (`socket_name`). A node dialling *host*:*port*
tries that name first: if it answers, the peer runs on this machine, in this
network namespace (abstract names are scoped by it), and the link skips the TCP
stack (the kernel's loopback path costs a hop more than a Unix socket's). If it
does not, the dial goes over TCP as before. Everything above the socket — the
handshake with its cookie, framing, heartbeats, flow control — is the same.

Only a node that holds the TCP port binds the name, but abstract names have no
owner: another process could bind a node's name first. So a dialler uses a name
only if the process listening on it runs as its own user (or root: ``SO_PEERCRED``)
— another user's process can neither keep it from the node nor sit between them
(relaying the handshake) — and a node that finds its name taken says so in one log
line and serves over TCP alone. A dialler that reaches a name but fails the
handshake there without being refused, or gets no answer within half its connect
timeout, tries TCP with the rest. A peer that proves the cookie and refuses us is
believed, as over TCP. Nodes behind TLS (``ssl=``) never use Unix sockets: their
traffic stays encrypted end to end. ``CLOUDY_LOCAL_SOCKETS=0`` (or
``LocalNode(local_sockets=False)``) keeps a node on TCP alone.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import sys

__all__ = ["ENV", "SUPPORTED", "bind", "dial", "socket_name", "wanted"]

log = logging.getLogger("cloudy.transport")

#: Abstract Unix socket names are Linux's.
SUPPORTED = sys.platform == "linux"
#: Set to 0 to link every node over TCP (say, to test what a network does to it).
ENV = "CLOUDY_LOCAL_SOCKETS"


def wanted(asked: bool | None) -> bool:
    """Whether to use local sockets: as *asked*, else as ``$CLOUDY_LOCAL_SOCKETS`` says
    (on unless it is 0), and only where supported."""
    if asked is None:
        asked = os.environ.get(ENV, "1").strip().lower() not in ("0", "no", "false", "off")
    return asked and SUPPORTED


def socket_name(host: str, port: int) -> str:
    """The abstract socket name of the node listening on TCP *host*:*port*."""
    return f"\0cloudy/{host}:{port}"


def bind(host: str, port: int) -> socket.socket | None:
    """A non-blocking socket bound to the name of the node on *host*:*port* (the
    server made on it listens), or None (said in a log line) when the name is taken."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(socket_name(host, port))
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        log.warning(
            "not listening on the local socket of %s:%d (%s): another process holds its "
            "name; this node serves over TCP (a caller of that process's user reaches "
            "that process first)",
            host,
            port,
            e.strerror or e,
        )
        return None
    return sock


def dial(host: str, port: int) -> socket.socket | None:
    """A connected, non-blocking socket to the node on *host*:*port* if it listens
    on this machine's name for it, as our user (or root), else None (dial TCP)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        sock.connect(socket_name(host, port))
        uid = peer_uid(sock)
    except OSError:  # no such name (ECONNREFUSED), or its backlog is full (EAGAIN)
        sock.close()
        return None
    if uid not in (os.getuid(), 0):
        sock.close()
        log.warning(
            "the local socket of %s:%d is held by another user (uid %d): dialling TCP",
            host,
            port,
            uid,
        )
        return None
    return sock


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process that listens at the other end of *sock*."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)
