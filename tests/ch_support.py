"""What the ports of Cloud Haskell's tests (tests/ch/) share: the cookie, a fresh node to
run a process on, and the helpers for broken connections, monitors and trace events
(the peer node is ``tests/ch/conftest.py``'s fixture)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from typing import Any

from cloudy import (
    LocalNode,
    NodeId,
    NodeMonitorNotification,
    ProcessMonitorNotification,
    ReceivePort,
    SendPort,
    TraceEvent,
    expect,
    get_self_node,
    match_if,
    monitor_node,
    receive_chan_timeout,
    receive_timeout,
    send_chan,
    unmonitor_node,
)

COOKIE = "ch-parity"
WAIT = 10.0  # what is due at once must come well within it


async def run(main: Callable[..., Any], *args: Any, **options: Any) -> Any:
    """Run *main* as a process on a fresh node (in this OS process); what it returns."""
    options.setdefault("cookie", COOKIE)
    options.setdefault("local_sockets", False)  # (see `peer`)
    async with LocalNode("127.0.0.1", 0, **options) as node:
        return await asyncio.wait_for(node.run_process(main, *args), 30)


def cut(*nodes: NodeId) -> None:
    """Cloud Haskell's ``testBreakConnection``: reset every TCP connection to or from
    the ports of *nodes* on 127.0.0.1 (both ends get a reset)."""
    ports = " or ".join(f"dport = :{n.port} or sport = :{n.port}" for n in nodes)
    subprocess.run(["ss", "-K", "dst", "127.0.0.1", f"( {ports} )"], capture_output=True)


async def break_connection(node: NodeId) -> None:
    """Cloud Haskell's ``syncBreakConnection``: cut this node's connections to *node*
    and return once this node has noticed (its node monitor fired)."""
    ref = monitor_node(node)
    for _ in range(100):  # until there is a connection to cut (it may be opening)
        cut(get_self_node(), node)
        lost = await receive_timeout(
            0.1, match_if(NodeMonitorNotification, lambda n: n.ref == ref, lambda n: n)
        )
        if lost is not None:
            return
    unmonitor_node(ref)
    raise AssertionError(f"the connection to {node} did not break (ss -K needs CAP_NET_ADMIN)")


async def down(ref: Any) -> ProcessMonitorNotification:
    """The notification of monitor *ref* (within WAIT)."""
    note = await receive_timeout(
        WAIT, match_if(ProcessMonitorNotification, lambda n: n.ref == ref, lambda n: n)
    )
    assert note is not None, "no ProcessMonitorNotification in time"
    return note


async def forward_events(port: SendPort) -> None:
    """A tracer that passes every `TraceEvent` on, on *port*."""
    while True:
        send_chan(port, await expect(TraceEvent))


async def next_events(rp: ReceivePort[TraceEvent], n: int) -> list[tuple[Any, ...]]:
    """The next *n* events on *rp*, as ``(kind, pid, detail)``."""
    got: list[tuple[Any, ...]] = []
    for _ in range(n):
        ev = await receive_chan_timeout(rp, WAIT)
        assert ev is not None, f"only {got} came"
        got.append((ev.kind, ev.pid, ev.detail))
    return got
