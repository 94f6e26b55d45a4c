"""Masters and slaves on a SimpleLocalnet backend, as Cloud Haskell's.

A slave node runs one *slave controller* process, registered as ``"slaveController"``,
until a master sends it `TerminateSlave`; a master finds the slave controllers
(`find_slaves`), has their logs print on its own node (`redirect_logs_here`), runs
its program with the slaves' nodes, and may end them (`terminate_slaves`).
`terminate_all_slaves` and `redirect_logs_here` return once every slave has
confirmed (or its connection dropped), not after a fixed sleep.

Users import these names from `cloudy.backend.simplelocalnet`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .. import (
    CloudyError,
    Message,
    NodeId,
    NodeMonitorNotification,
    ProcessId,
    ProcessMonitorNotification,
    clock,
    get_self_node,
    get_self_pid,
    match,
    match_any,
    match_if,
    monitor,
    monitor_node,
    nsend_remote,
    receive_timeout,
    receive_wait,
    register,
    reregister,
    send,
    unmonitor,
    unmonitor_node,
    whereis,
)
from ..aio import run
from .claims import Claim, Claims, Release
from .forming import Forming, form
from .localnet import DEFAULT_DISCOVERY_TIMEOUT, SLAVE_CONTROLLER, Backend, by_address, whereis_on

__all__ = [
    "LogsRedirected",
    "RedirectLogs",
    "SlaveTerminated",
    "TerminateSlave",
    "find_slaves",
    "redirect_logs_here",
    "run_master",
    "run_slave",
    "start_master",
    "start_slave",
    "terminate_all_slaves",
    "terminate_slave",
    "terminate_slaves",
]

log = logging.getLogger("cloudy.backend")

# How long a master waits for the next slave to confirm `TerminateSlave` or
# `RedirectLogs`: a node's default connect timeout (5 s). `terminate_slaves` is given
# nodes, not our `LocalNode`, so it cannot ask the node for its own.
CONFIRM_TIMEOUT = 5.0

# The messages keep the wire tags they had when they were defined in
# cloudy.backend.simplelocalnet, so that masters and slaves of either layout agree.
_TAG = "cloudy.backend.simplelocalnet."


# ====================================================================================
# Messages between the master and the slave controllers
# ====================================================================================


class TerminateSlave(Message, tag=_TAG + "TerminateSlave"):
    """Ends a slave controller, and with it the slave's program."""

    reply_to: ProcessId | None = None


class SlaveTerminated(Message, tag=_TAG + "SlaveTerminated"):
    """A slave controller's answer to `TerminateSlave`: it is ending now."""

    node: NodeId


class RedirectLogs(Message, tag=_TAG + "RedirectLogs"):
    """Makes a slave's ``"logger"`` name point at *logger* (on the master)."""

    logger: ProcessId
    reply_to: ProcessId


class LogsRedirected(Message, tag=_TAG + "LogsRedirected"):
    """A slave controller's answer to `RedirectLogs`."""

    node: NodeId


# ====================================================================================
# Slaves
# ====================================================================================


async def _slave_controller(tell: Callable[[str], None]) -> None:
    """Registered as ``"slaveController"``: waits for work and for `TerminateSlave`;
    *tell* hears when a master takes this slave, when that master is gone, and why
    the slave ends."""
    me = get_self_node()
    own_logger = whereis("logger")
    redirected: Any = None  # the monitor on the master's logger, while redirected
    claims = Claims()  # the master this slave serves, while one holds it
    while True:
        msg = await receive_wait(match_any())
        if isinstance(msg, Claim):
            claims.claim(msg)
        elif isinstance(msg, Release):
            claims.release(msg)
        elif isinstance(msg, ProcessMonitorNotification) and claims.holder_gone(msg):
            pass  # free for the next master
        elif isinstance(msg, TerminateSlave):
            by = "a master" if msg.reply_to is None else f"the master on {msg.reply_to.node}"
            tell(f"slave {me} ended by {by}")
            if msg.reply_to is not None:
                send(msg.reply_to, SlaveTerminated(me))
            return
        if isinstance(msg, RedirectLogs):
            if redirected is not None:
                unmonitor(redirected)
            _point_logger_at(msg.logger)
            redirected = monitor(msg.logger)
            send(msg.reply_to, LogsRedirected(me))
            tell(f"slave {me} taken by the master on {msg.logger.node}")
        elif isinstance(msg, ProcessMonitorNotification) and msg.ref == redirected:
            # the master's logger is gone (the master ended, was killed, or its
            # user pressed Ctrl-C: all alike from here): our lines print here again
            redirected = None
            if own_logger is not None:
                _point_logger_at(own_logger)
            tell(f"slave {me}: the master on {msg.pid.node} has gone; waiting for a new master")
        else:
            log.debug("slave controller ignored %r", msg)


def _silent(line: str) -> None:
    pass


def _point_logger_at(pid: ProcessId) -> None:
    if whereis("logger") is None:
        register("logger", pid)
    else:
        reregister("logger", pid)


async def _run_then_close(backend: Backend, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run *fn* as a process on the backend's node; close the backend when it ends."""
    node = await backend.new_local_node()
    try:
        return await node.run_process(fn)
    finally:
        await backend.close()


async def run_slave(backend: Backend, *, tell: Callable[[str], None] = _silent) -> None:
    """Run a slave node until a master terminates it (the coroutine form of `start_slave`).

    *tell* is given one line (naming this node) when a master takes the slave (it
    redirects the slave's logs), when that master has gone — the slave then waits for
    a new one — and when a master ends the slave.
    """

    async def controller() -> None:
        register(SLAVE_CONTROLLER, get_self_pid())
        await _slave_controller(tell)

    await _run_then_close(backend, controller)


def start_slave(backend: Backend) -> None:
    """Start a slave node and block until a master terminates it, as Cloud Haskell's."""
    run(run_slave(backend))


def terminate_slave(node: NodeId) -> None:
    """Ask the slave on *node* to end (from inside a process; no confirmation awaited)."""
    nsend_remote(node, SLAVE_CONTROLLER, TerminateSlave(None))


async def find_slaves(
    backend: Backend,
    timeout: float = DEFAULT_DISCOVERY_TIMEOUT,  # noqa: ASYNC109 - as Cloud Haskell's
) -> list[ProcessId]:
    """The slave controllers of the nodes that answer discovery within *timeout* s.

    Call it inside a process. Nodes that die meanwhile, and masters, are left out.
    """
    peers = await backend.find_peers(timeout)
    node = backend.node
    deadline = clock.now() + node.connect_timeout
    answers = await asyncio.gather(
        *(whereis_on(node, peer, SLAVE_CONTROLLER, deadline) for peer in peers)
    )
    return sorted(
        (a.pid for a in answers if a is not None and a.pid is not None),
        key=lambda p: by_address(p.node),
    )


async def _confirmed(
    nodes: list[NodeId],
    ask: Callable[[NodeId], None],
    reply: type[SlaveTerminated | LogsRedirected],
) -> None:
    """Call ``ask(node)`` for each node; return once each replied with *reply* or was lost."""
    refs = {monitor_node(node): node for node in nodes}
    pending = set(nodes)
    for node in nodes:
        ask(node)
    while pending:
        msg = await receive_timeout(
            CONFIRM_TIMEOUT,
            match(reply),
            match_if(NodeMonitorNotification, lambda m: m.ref in refs),
        )
        if msg is None:
            log.warning("no answer from %s", ", ".join(sorted(map(str, pending))))
            break
        if isinstance(msg, NodeMonitorNotification):
            pending.discard(refs[msg.ref])
        elif isinstance(msg, SlaveTerminated | LogsRedirected):
            pending.discard(msg.node)
    for ref in refs:
        unmonitor_node(ref)


async def terminate_slaves(nodes: Iterable[NodeId]) -> None:
    """End the slaves on *nodes*; returns once each confirmed or its connection dropped."""
    me = get_self_pid()

    def ask(node: NodeId) -> None:
        nsend_remote(node, SLAVE_CONTROLLER, TerminateSlave(me))

    await _confirmed(list(nodes), ask, SlaveTerminated)


async def terminate_all_slaves(
    backend: Backend,
    timeout: float = DEFAULT_DISCOVERY_TIMEOUT,  # noqa: ASYNC109 - as find_slaves'
) -> None:
    """End every slave that answers discovery within *timeout* s; returns once each
    confirmed or its connection dropped."""
    await terminate_slaves(pid.node for pid in await find_slaves(backend, timeout))


async def redirect_logs_here(backend: Backend, slave_controllers: Iterable[ProcessId]) -> None:
    """Make the slaves' ``say`` lines print on this node (returns once each confirmed)."""
    logger = whereis("logger")
    if logger is None:
        raise CloudyError(f"no process is registered as 'logger' on {get_self_node()}")
    me = get_self_pid()
    controllers = {pid.node: pid for pid in slave_controllers}

    def ask(node: NodeId) -> None:
        send(controllers[node], RedirectLogs(logger, me))

    await _confirmed(list(controllers), ask, LogsRedirected)


# ====================================================================================
# Masters
# ====================================================================================


async def run_master(
    backend: Backend,
    proc: Callable[[list[NodeId]], Awaitable[Any]],
    *,
    slaves: int | None = None,
    within: float = 30.0,
    stable_for: float = 0.0,
    on_wait: Callable[[], None] | None = None,
    on_found: Callable[[int], None] | None = None,
) -> Any:
    """Find the slaves, claim them, redirect their logs here, run ``proc(slave_nodes)``
    as a process.

    The coroutine form of `start_master`; returns what *proc* returns. With *slaves*,
    discovery goes on until that many are found (then exactly that many are used);
    the slaves taken must have stayed the same for *stable_for* seconds; each is
    claimed, so that it serves this master alone while it lives (the rules:
    `cloudy.backend.forming`). A master that finds by DNS never forms with no slave.
    It tries for at most *within* seconds, then raises `CloudyError` saying why;
    *on_wait* is called before each round and may raise to give up; *on_found* is told
    after each round how many slaves it found.
    """
    rules = Forming(slaves, stable_for, within, at_least_one=backend.dns is not None)

    async def master() -> Any:
        found = await form(
            lambda: find_slaves(backend),
            rules,
            on_wait=on_wait,
            on_found=on_found,
            explain=lambda: _nothing_found(backend),
        )
        if not found:
            print(_nothing_found(backend), file=sys.stderr, flush=True)
        found = found[:slaves]
        await redirect_logs_here(backend, found)
        return await proc([pid.node for pid in found])

    return await _run_then_close(backend, master)


def start_master(backend: Backend, proc: Callable[[list[NodeId]], Awaitable[Any]]) -> Any:
    """Find the slaves, redirect their logs here, run ``proc(slave_nodes)``; block until done."""
    return run(run_master(backend, proc))


def _nothing_found(backend: Backend) -> str:
    lines = [f"cloudy: not enough slaves found with {backend.describe_discovery()}. Check:"]
    if backend.discovery_error:
        lines.append(f"  - multicast is unusable here ({backend.discovery_error}): use --peers")
    if backend.other_cookies:
        lines.append(
            f"  - {backend.other_cookies} node(s) answered with a different cookie: "
            "give every node the same one"
        )
    lines.append(
        "  - that the slaves run and use the same cookie (--cookie, CLOUDY_COOKIE or "
        "~/.cloudy/cookie)"
    )
    dns = backend.dns
    if dns is not None:
        if dns.error:
            lines.append(f"  - the DNS lookup: {dns.error}")
        lines += [
            f"  - that {dns.name} names the slaves: its SRV records (_cloudy._tcp.{dns.name}) "
            f"or its A/AAAA records at port {dns.port}",
            f"  - that the slaves listen at the addresses it names ({len(dns.peers)} now)",
        ]
    else:
        lines += [
            "  - that a firewall lets UDP multicast through on that interface, or use --peers",
            f"  - that the slaves' hosts are on the same network as {backend.interface}"
            " (a loopback address only reaches this machine)",
        ]
    lines.append(f"  - cloudy doctor {backend.host}")
    return "\n".join(lines)
