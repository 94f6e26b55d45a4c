"""``cloudy health HOST PORT``: does a cloudy node with our cookie answer there?

A container probe (Docker's HEALTHCHECK, Kubernetes' readiness and liveness probes):
it starts a node of its own for a moment on the address this machine uses to reach
HOST, connects, completes the handshake — which only a node with the same cookie
completes — and asks the node about its slave controller (any answer will do: one
that comes proves the node's processes run, not only its socket). Exit status 0 when
it answered within the timeout, 1 otherwise, with one line saying what failed (and
before it, where a node there refused us — another cookie, another protocol version
— the transport's warning saying so; what answers but is not cloudy is the
dialler's to report, and this is the line that does).
"""

from __future__ import annotations

import socket
import sys
from typing import Any, TextIO

from .. import LocalNode, NodeId, clock
from .localnet import SLAVE_CONTROLLER, whereis_on

__all__ = ["DEFAULT_HEALTH_TIMEOUT", "health", "local_address_for"]

#: How long the check waits for the node's answer: a probe's usual timeout is longer.
DEFAULT_HEALTH_TIMEOUT = 3.0


def local_address_for(host: str, port: int) -> str:
    """The address this machine would send from to reach *host*:*port* (no packet sent)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(address)
        own: str = s.getsockname()[0]
    return own


async def health(
    host: str,
    port: int,
    *,
    timeout: float = DEFAULT_HEALTH_TIMEOUT,  # noqa: ASYNC109 - a probe's own setting
    out: TextIO | None = None,
    **options: Any,
) -> int:
    """0 if a node with our cookie answers at *host*:*port* within *timeout* s, else 1."""
    out = out or sys.stderr
    target = NodeId(host, port)
    try:
        own = local_address_for(host, port)
    except OSError as e:
        print(f"cloudy health: cannot reach {host}:{port}: {e}", file=out)
        return 1
    options.setdefault("connect_timeout", timeout)
    node = LocalNode(own, 0, cookie=options.pop("cookie", None), local_sockets=False, **options)
    await node.start()
    try:
        answer = await whereis_on(node, target, SLAVE_CONTROLLER, clock.now() + timeout)
    finally:
        await node.close()
    if answer is None:
        print(
            f"cloudy health: no cloudy node with this cookie answered at {host}:{port} "
            f"within {timeout:g} s",
            file=out,
        )
        return 1
    return 0
