"""Free ports for tests and for `cloudy local`'s child nodes."""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

# Where the system takes the ports of outgoing connections (Linux's default elsewhere).
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
_TRIES = 32


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port that was free on *host* a moment ago (TCP by default).

    Picked below the range the system gives outgoing connections their own ports from
    when it can: a port from that range may be taken by some connection between now
    and the moment whoever asked binds it.
    """
    low = _ephemeral_low()
    for port in random.sample(range(low // 2, low), min(_TRIES, low - low // 2)):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, kind) as s:  # all taken: any the system has
        s.bind((host, 0))
        bound: int = s.getsockname()[1]
        return bound


def _ephemeral_low() -> int:
    try:
        return max(int(_EPHEMERAL.read_text().split()[0]), 2048)
    except (OSError, ValueError, IndexError):
        return 32768
