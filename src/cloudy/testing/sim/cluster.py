"""`Sim`: a whole cluster of real cloudy nodes in one process, on a virtual clock and
network, driven from a plain (synchronous) test.

    with Sim(seed=7) as sim:
        a, b = sim.add_node("a"), sim.add_node("b")
        pid = sim.spawn(b, echo)                       # a process on b
        reply = sim.run(a, a.node.run_process(ask, pid))
        sim.crash(b)                                    # as kill -9
        sim.run_for(3.0)                                # 3 virtual seconds, at once

Each node is a `LocalNode` — the real one: its router, mailboxes, monitors, links,
registry, codec, handshake, heartbeat and supervisors — on a loop of its own
(``loop.py``); only the byte pipe between nodes, the clocks and chance are the
world's (``world.py``, ``net.py``). The same seed gives the same run, event for event:
compare `digest`s. Faults are the methods below, or a `FaultPlan` (``faults.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, TypeVar

from ... import LocalNode, NodeId, ProcessId
from ...backend.simplelocalnet import Backend
from ...closure import RemoteTable
from .loop import SimLoop
from .world import Latency, SimTimeout, World

__all__ = ["Sim", "SimNode", "SimTimeout"]

T = TypeVar("T")

# The first simulated host; the n-th node runs on 127.0.1.n (nothing is ever sent
# there: no socket is opened in a simulation).
HOST_PREFIX = "127.0.1."
# Tight enough that a lost peer is noticed in a fraction of a schedule.
DEFAULT_HEARTBEAT = 1.0
DEFAULT_CONNECT = 1.0


class SimNode:
    """One simulated node: its name, host, loop and `LocalNode` (new on each restart)."""

    def __init__(self, sim: Sim, name: str, host: str, port: int, options: dict[str, Any]):
        self.sim, self.name, self.host, self.port = sim, name, host, port
        self.options = options
        self.incarnations = 0
        self.discovery = False
        self.backend: Backend | None = None  # with discovery: SimpleLocalnet's
        self.loop: SimLoop
        self.node: LocalNode

    def __repr__(self) -> str:
        state = "crashed" if self.crashed else "paused" if self.loop.paused else "up"
        return f"<SimNode {self.name} {self.host}:{self.port} {state}>"

    @property
    def node_id(self) -> NodeId:
        return self.node.node_id

    @property
    def crashed(self) -> bool:
        return self.loop.crashed

    @property
    def paused(self) -> bool:
        return self.loop.paused


class Sim:
    """A simulated cluster (a context manager: leaving it drops every node)."""

    def __init__(
        self,
        seed: int = 0,
        *,
        latency: Latency | None = None,
        cookie: str = "cloudy-sim",
        heartbeat_timeout: float = DEFAULT_HEARTBEAT,
        connect_timeout: float = DEFAULT_CONNECT,
        remote_table: RemoteTable | None = None,
        capture_logs: bool = True,
    ) -> None:
        self.world = World(seed, latency=latency)
        self.seed = seed
        self.cookie = cookie
        self.heartbeat_timeout = heartbeat_timeout
        self.connect_timeout = connect_timeout
        self.remote_table = remote_table
        self.nodes: dict[str, SimNode] = {}
        self._capture = _LogCapture(self.world) if capture_logs else None

    def __enter__(self) -> Sim:
        if self._capture is not None:
            self._capture.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Drop every node (as if the whole cluster were switched off): no code of
        theirs runs again, not even a `finally` clause when the garbage collector
        finds their tasks (each coroutine is closed here, its words discarded)."""
        for loop in self.world.loops:
            loop.crashed = True
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            logging.disable(logging.CRITICAL)
            try:
                for loop in self.world.loops:
                    asyncio.events._set_running_loop(loop)
                    try:
                        for task in asyncio.all_tasks(loop):
                            with contextlib.suppress(BaseException):
                                task.get_coro().close()
                    finally:
                        asyncio.events._set_running_loop(None)
            finally:
                logging.disable(logging.NOTSET)
        if self._capture is not None:
            self._capture.remove()

    # --- what happened -------------------------------------------------------------

    @property
    def now(self) -> float:
        return self.world.now

    @property
    def digest(self) -> str:
        """The trace's digest: equal for runs of the same seed, plan and code."""
        return self.world.trace.digest

    def record(self, kind: str, *fields: Any) -> None:
        """Add an event of your own to the trace (and so to the digest)."""
        self.world.record(kind, *fields)

    # --- nodes -----------------------------------------------------------------------

    def add_node(
        self,
        name: str | None = None,
        *,
        port: int = 0,
        rate: float = 1.0,
        offset: float = 0.0,
        speed: float = 1.0,
        discovery: bool = False,
        **options: Any,
    ) -> SimNode:
        """Start a node on a host of its own (*rate*, *offset*: its clock's drift;
        *speed*: its CPU's; *options*: `LocalNode`'s). With *discovery* the node is
        made by a SimpleLocalnet `Backend` (`SimNode.backend`) whose multicast
        discovery runs on the simulated network."""
        name = name or f"n{len(self.nodes) + 1}"
        if name in self.nodes:
            raise ValueError(f"a node {name!r} exists already")
        host = HOST_PREFIX + str(len(self.nodes) + 1)
        sim_node = SimNode(self, name, host, port, dict(options))
        sim_node.discovery = discovery
        self.nodes[name] = sim_node
        self._boot(sim_node, rate=rate, offset=offset, speed=speed)
        return sim_node

    def _boot(self, n: SimNode, *, wait: bool = True, **clock: float) -> None:
        """Start *n*'s node on a new loop; unless *wait*, return at once (from inside the
        world's step: a fault), the node taking its place once it has started."""
        n.loop = loop = self.world.loop(n.name, n.host, **clock)
        n.incarnations += 1
        options: dict[str, Any] = dict(
            cookie=self.cookie,
            heartbeat_timeout=self.heartbeat_timeout,
            connect_timeout=self.connect_timeout,
            local_sockets=False,
        )
        options.update(n.options)

        async def boot() -> LocalNode:
            if n.discovery:
                n.backend = Backend(n.host, n.port, self.remote_table, **options)
                node = await n.backend.new_local_node()
            else:
                node = LocalNode(n.host, n.port, self.remote_table, **options)
                await node.start()
            n.node, n.port = node, node.node_id.port
            self.world.record("boot", n.name, str(node.node_id), n.incarnations)
            return node

        if wait:
            self._run_on(loop, boot(), limit=self.world.now + 60.0)
        else:
            loop.create_task(boot())

    def node(self, name: str) -> SimNode:
        return self.nodes[name]

    # --- running things ---------------------------------------------------------------

    def run(self, on: SimNode, coro: Coroutine[Any, Any, T], *, limit: float = 600.0) -> T:
        """Run *coro* on *on*'s loop until it ends (at most *limit* virtual seconds from
        now; `SimTimeout` past it) and return its result; the world runs meanwhile."""
        return self._run_on(on.loop, coro, limit=self.world.now + limit)

    def _run_on(self, loop: SimLoop, coro: Coroutine[Any, Any, T], *, limit: float) -> T:
        task = loop.create_task(coro)
        try:
            self.world.run_until(task.done, limit=limit)
        except SimTimeout:
            task.cancel()
            raise
        return task.result()

    def spawn(self, on: SimNode, fn: Callable[..., Any], *args: Any) -> ProcessId:
        """Start ``fn(*args)`` as a process on *on*; its pid."""

        async def fork() -> ProcessId:
            return on.node.fork_process(fn, *args)

        return self.run(on, fork())

    def run_for(self, seconds: float) -> None:
        """Let *seconds* of virtual time pass, everything running meanwhile."""
        self.world.run_for(seconds)

    def run_until(self, done: Callable[[], bool], *, limit: float = 600.0) -> None:
        self.world.run_until(done, limit=self.world.now + limit)

    # --- faults -------------------------------------------------------------------------

    def crash(self, n: SimNode) -> None:
        """Kill *n* as kill -9 would: its state is gone, the kernel closes its sockets."""
        if not n.crashed:
            self.world.record("crash", n.name)
            n.loop.crashed = True
            self.world.net.crash(n.loop)
            self.world.datagrams.crash(n.loop)

    def restart(self, n: SimNode, **clock: float) -> None:
        """Start *n* again on the same host and port: a new incarnation, empty state."""
        self.crash(n)
        self.world.record("restart", n.name)
        self._boot(n, wait=False, **clock)

    def pause(self, n: SimNode) -> None:
        """Freeze *n*'s loop (SIGSTOP): the others go on, its peers hear nothing."""
        self.world.record("pause", n.name)
        n.loop.paused = True

    def resume(self, n: SimNode) -> None:
        self.world.record("resume", n.name)
        n.loop.paused = False

    def stall(self, n: SimNode, seconds: float) -> None:
        """Make *n*'s next turn that runs a timer last *seconds* (a long callback, a GC
        pause): its loop is late, its peers' bytes wait unread meanwhile."""
        self.world.record("stall", n.name, seconds)
        n.loop.stall_for = seconds

    def partition(
        self, one: Iterable[SimNode], other: Iterable[SimNode], *, oneway: bool = False
    ) -> None:
        """Cut every path from *one* to *other* (and back, unless *oneway*)."""
        one, other = list(one), list(other)
        self.world.record("cut", [n.name for n in one], [n.name for n in other], oneway)
        for a in one:
            for b in other:
                self.world.net.cut(a.host, b.host)
                if not oneway:
                    self.world.net.cut(b.host, a.host)

    def heal(
        self,
        one: Iterable[SimNode] | None = None,
        other: Iterable[SimNode] | None = None,
        *,
        oneway: bool = False,
    ) -> None:
        """Heal the paths `partition` cut between *one* and *other* (every cut path if
        neither is given); what they held arrives now, in order."""
        net = self.world.net
        if one is None or other is None:
            self.world.record("heal")
            paths = list(net.cut_paths)
        else:
            one, other = list(one), list(other)
            self.world.record("heal", [n.name for n in one], [n.name for n in other], oneway)
            paths = [(a.host, b.host) for a in one for b in other]
            paths += [] if oneway else [(b.host, a.host) for a in one for b in other]
        for src, dst in paths:
            net.heal(src, dst)

    def reset(self, a: SimNode, b: SimNode) -> None:
        """Reset every connection between *a* and *b* (both are told)."""
        self.world.record("reset", a.name, b.name, self.world.net.reset(a.host, b.host))

    def damage(self, a: SimNode, b: SimNode, how: str = "flip") -> None:
        """Damage the next bytes from *a* to *b*: flip a bit, or "truncate" and reset."""
        self.world.record("arm", a.name, b.name, how)
        self.world.net.corrupt[(a.host, b.host)] = how

    def slow(self, a: SimNode, b: SimNode, extra: float) -> None:
        """Add *extra* seconds to every segment from *a* to *b* (0: back to normal)."""
        self.world.record("slow", a.name, b.name, extra)
        self.world.slow[(a.host, b.host)] = extra


class _LogCapture(logging.Handler):
    """cloudy's log lines during a simulation, stamped with virtual time and node."""

    def __init__(self, world: World) -> None:
        super().__init__(logging.DEBUG)
        self.world = world
        self._was: tuple[bool, int] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        loop = asyncio.events._get_running_loop()
        who = loop.name if isinstance(loop, SimLoop) else "-"
        line = f"{self.world.now:12.6f} {who:<6} {record.levelname:<7} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + logging.Formatter().formatException(record.exc_info)
        self.world.logs.append(line)

    def install(self) -> None:
        root = logging.getLogger("cloudy")
        self._was = (root.propagate, root.level)
        root.addHandler(self)
        root.propagate = False
        root.setLevel(logging.INFO)

    def remove(self) -> None:
        root = logging.getLogger("cloudy")
        root.removeHandler(self)
        if self._was is not None:
            root.propagate, level = self._was
            root.setLevel(level)
