"""How far the full mesh goes: N nodes, each in its own OS process, all connected.

Run: ``.venv/bin/python benchmarks/mesh.py [--sizes 16,32,64] [--idle 5] [--link tcp|unix]
[--dial all|half]``.

For each N, N nodes start at once (`cloudy.testing.NodeProcess`: ``python -m
cloudy.testing mesh``, on 127.0.0.1, each with a free port, all with this run's
private cookie; their links are TCP unless ``--link unix``). Once all of them listen:

* idle, unconnected: each one's RSS (VmRSS in /proc/PID/status) and CPU time
  (utime+stime in /proc/PID/stat) over *idle* seconds;
* this benchmark's own node (the *driver*) finds each node's ``mesh`` process
  (untimed), then tells them all the list of the N node ids at once; each asks
  every other for its ``mesh`` process (`whereis_remote_async`; with ``--dial half``
  only those after it in the list, the others dial it) and reports once it has its
  answers and its node stats show N-1 live peers. The mesh time runs from the
  driver's command to the last report: every node then has N-1 live peers;
* connected: the peers and connections each node's stats show (its connection to
  the driver left out) and the sockets in its /proc/PID/fd; then over *idle* seconds
  of quiet, the bytes and frames it sends to the mesh (heartbeat ticks: `NodeStats`
  counts bytes per connection; a tick is an empty 12-byte frame, not a message), its
  CPU time, and its RSS at the end.

Every node is ended by its PID (SIGTERM, then SIGKILL) whatever happens. The last
line holds the medians over the nodes of each N.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import secrets
import signal
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from _common import LINKS, Parser, loop_name, positive, run, use_link

from cloudy import (
    LocalNode,
    Message,
    NodeId,
    NodeStats,
    PeerStats,
    ProcessId,
    WhereIsReply,
    expect,
    expect_timeout,
    get_node_stats,
    get_self_node,
    get_self_pid,
    register,
    send,
    whereis_remote_async,
)
from cloudy.node import current_node
from cloudy.testing import NodeProcess, free_port
from cloudy.wire.framing import TICK

MODULE = "mesh"  # what each child imports: this file (benchmarks/ is on its path)
COOKIE = f"mesh-{secrets.token_hex(12)}"  # this run's own: no other node may join
CLK_TCK = os.sysconf("SC_CLK_TCK")
ASK_AGAIN = 3.0  # seconds after which a node asks again those that did not answer


if __name__ == "__main__":  # be the module the children import: its messages are theirs
    import mesh

    sys.exit(mesh.main())


class Mesh(Message):
    """To a node's ``mesh`` process: connect to *dial* (their ``mesh`` processes), then
    report to *reply_to* once *expect* peers (the driver aside) are live."""

    dial: list[NodeId]
    expect: int
    reply_to: ProcessId
    timeout: float


class Meshed(Message):
    """A node's report: the seconds it took, how many times it asked again, its live
    peers and connections (the driver's aside)."""

    node: NodeId
    seconds: float
    again: int
    peers: int
    conns: int


def mesh_links(stats: NodeStats, driver: NodeId) -> list[PeerStats]:
    """The live connections of a node to the other mesh nodes (not to the driver)."""
    return [p for p in stats.peers if p.node != driver and p.state in ("up", "busy")]


async def setup() -> None:
    """Each child's ``mesh`` process (`NodeProcess` runs it): mesh when told."""
    register("mesh", get_self_pid())
    while True:
        cmd = await expect(Mesh)
        start = time.perf_counter()
        deadline = start + cmd.timeout
        waiting, again, ask_at = set(cmd.dial), -len(cmd.dial), start
        while waiting and (now := time.perf_counter()) < deadline:
            if now >= ask_at:  # (again: an answer may be lost with its connection)
                for node in waiting:
                    whereis_remote_async(node, "mesh")
                again, ask_at = again + len(waiting), now + ASK_AGAIN
            reply = await expect_timeout(min(deadline, ask_at) - now, WhereIsReply)
            if reply is not None and reply.pid is not None:
                waiting.discard(reply.pid.node)
        driver = cmd.reply_to.node
        while True:  # the nodes that dial us may not all have come yet
            links = mesh_links(current_node().node_stats(), driver)
            peers = len({p.node for p in links})
            if peers >= cmd.expect or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - start
        send(cmd.reply_to, Meshed(get_self_node(), seconds, again, peers, len(links)))


# --- what /proc tells of a process ---------------------------------------------------


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def tcp_inodes() -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            inodes.update(line.split()[9] for line in list(f)[1:])
    return inodes


def sockets(pid: int, tcp: set[str]) -> tuple[int, int]:
    """How many of *pid*'s open files are TCP sockets, and how many other sockets."""
    n_tcp = n_other = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                if target[8:-1] in tcp:
                    n_tcp += 1
                else:
                    n_other += 1
    return n_tcp, n_other


# --- one size ------------------------------------------------------------------------


@dataclass
class Result:
    n: int
    started: float  # seconds to start all N processes until all listened
    mesh: float  # the driver's command to the last report
    node_times: list[float]  # each node's own time to its report
    peers: list[int]
    conns: list[int]
    tcp_sockets: list[int]
    other_sockets: list[int]
    rss_before: list[float]
    rss_after: list[float]
    cpu_before: list[float]  # CPU seconds per second, idle, unconnected
    cpu_after: list[float]  # the same, idle, in the mesh
    mesh_cpu: list[float]  # CPU seconds each node spent while the mesh formed
    bytes_out: list[float]  # bytes per second sent to the mesh, idle
    frames_out: list[float]  # ticks per second (bytes / 12) plus messages, idle
    missed: int  # heartbeats missed, all nodes, over the idle window
    losses: int  # connections lost, all nodes, from the mesh on
    failed: list[str]  # nodes that did not reach N-1 peers
    again: int  # questions asked again, all nodes (answers lost with a connection)
    refused: dict[str, int]  # frames and connections refused, all nodes, by reason
    why: str = ""  # the last lines of the log of the first node not meshed


def enter_all(procs: list[NodeProcess]) -> None:
    """Start the nodes at once; return once each listens."""
    with ThreadPoolExecutor(max_workers=len(procs)) as pool:
        for fut in [pool.submit(p.__enter__) for p in procs]:
            fut.result()


def stop_all(procs: list[NodeProcess]) -> None:
    for p in procs:  # SIGTERM to all first, so they end side by side
        with contextlib.suppress(Exception):
            p.signal(signal.SIGTERM)
    for p in procs:
        p.stop()  # (waits, SIGKILL after 5 s)


async def measure(
    procs: list[NodeProcess], started: float, idle: float, half: bool, patience: float
) -> Result:
    n, pids, ids = len(procs), [p.pid for p in procs], [p.node_id for p in procs]
    rss_before = [rss_mb(pid) for pid in pids]
    cpu0, t0 = [cpu_seconds(pid) for pid in pids], time.monotonic()
    await asyncio.sleep(idle)
    span = time.monotonic() - t0
    cpu_before = [(cpu_seconds(pid) - c) / span for pid, c in zip(pids, cpu0, strict=True)]

    for node in ids:  # the driver reaches every node first (not timed)
        whereis_remote_async(node, "mesh")
    mesh_pids: dict[NodeId, ProcessId] = {}
    while len(mesh_pids) < n:
        reply = await expect_timeout(patience, WhereIsReply)
        if reply is None:
            raise RuntimeError(f"only {len(mesh_pids)} of {n} nodes answered the driver")
        if reply.pid is not None:
            mesh_pids[reply.pid.node] = reply.pid

    me = get_self_pid()
    cpu0 = [cpu_seconds(pid) for pid in pids]
    start = time.perf_counter()
    for i, node in enumerate(ids):
        dial = ids[i + 1 :] if half else ids[:i] + ids[i + 1 :]
        send(mesh_pids[node], Mesh(dial, n - 1, me, patience))
    reports: dict[NodeId, Meshed] = {}
    while len(reports) < n:
        got = await expect_timeout(patience + 5 - (time.perf_counter() - start), Meshed)
        if got is None:
            break
        reports[got.node] = got
    mesh = time.perf_counter() - start
    mesh_cpu = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
    failed = [str(node) for node in ids if node not in reports or reports[node].peers < n - 1]

    await asyncio.sleep(1.0)  # let the last handshakes settle
    driver = get_self_node()
    before = [await get_node_stats(node) for node in ids]
    cpu0, t0 = [cpu_seconds(pid) for pid in pids], time.monotonic()
    await asyncio.sleep(idle)
    span = time.monotonic() - t0
    cpu_after = [(cpu_seconds(pid) - c) / span for pid, c in zip(pids, cpu0, strict=True)]
    after = [await get_node_stats(node) for node in ids]
    rss_after = [rss_mb(pid) for pid in pids]
    tcp = tcp_inodes()
    socks = [sockets(pid, tcp) for pid in pids]

    def out(stats: NodeStats) -> tuple[int, int]:
        links = mesh_links(stats, driver)
        return sum(p.bytes_out for p in links), sum(p.messages_out for p in links)

    bytes_out, frames_out = [], []
    for b, a in zip(before, after, strict=True):
        (b_bytes, b_msgs), (a_bytes, a_msgs) = out(b), out(a)
        dt = a.uptime - b.uptime
        bytes_out.append((a_bytes - b_bytes) / dt)
        msgs = a_msgs - b_msgs
        frames_out.append(((a_bytes - b_bytes) // len(TICK) if msgs == 0 else msgs) / dt)
    links_after = [mesh_links(a, driver) for a in after]
    refused = collections.Counter[str]()
    for a in after:
        refused.update(a.frames_refused)
    return Result(
        n=n,
        started=started,
        mesh=mesh,
        node_times=[r.seconds for r in reports.values()],
        peers=[len({p.node for p in links}) for links in links_after],
        conns=[len(links) for links in links_after],
        tcp_sockets=[t for t, _ in socks],
        other_sockets=[o for _, o in socks],
        rss_before=rss_before,
        rss_after=rss_after,
        cpu_before=cpu_before,
        cpu_after=cpu_after,
        mesh_cpu=mesh_cpu,
        bytes_out=bytes_out,
        frames_out=frames_out,
        missed=sum(a.heartbeats_missed for a in after) - sum(b.heartbeats_missed for b in before),
        losses=sum(a.connection_losses for a in after),
        failed=failed,
        again=sum(r.again for r in reports.values()),
        refused=dict(refused),
    )


async def drive(procs: list[NodeProcess], *args: float | bool) -> Result:
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE, logger=False) as node:
        result: Result = await node.run_process(measure, procs, *args)
        return result


def one_size(n: int, idle: float, half: bool, timeout: float) -> Result:
    ports: set[int] = set()
    while len(ports) < n:  # (free_port picks at random: two may pick the same)
        ports.add(free_port())
    procs = [NodeProcess(MODULE, cookie=COOKIE, port=p, start_timeout=90) for p in ports]
    try:
        t = time.perf_counter()
        enter_all(procs)
        result = run(drive(procs, time.perf_counter() - t, idle, half, timeout))
        for p in procs:
            if result.failed and str(p.node_id) == result.failed[0]:
                result.why = " | ".join(p.log().strip().splitlines()[-4:])
        return result
    finally:
        stop_all(procs)


# --- report --------------------------------------------------------------------------


def med(xs: list[float] | list[int]) -> float:
    return statistics.median(xs) if xs else 0.0


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else 0.0


def span(xs: list[int]) -> str:
    return f"{min(xs)}" if min(xs) == max(xs) else f"{min(xs)}-{max(xs)}"


def describe(r: Result) -> str:
    return (
        f"{r.n} nodes: started in {r.started:.1f} s; mesh in {r.mesh:.2f} s "
        f"(per node median {med(r.node_times):.2f} s, max {max(r.node_times, default=0):.2f} s; "
        f"CPU per node median {med(r.mesh_cpu) * 1e3:.0f} ms); "
        f"peers {span(r.peers)}, connections {span(r.conns)} (median {med(r.conns):.0f}), "
        f"TCP sockets per process {span(r.tcp_sockets)}, other sockets "
        f"{span(r.other_sockets)}; RSS median {med(r.rss_before):.1f} MB idle -> "
        f"{med(r.rss_after):.1f} MB meshed (max {max(r.rss_after):.1f}); idle in the mesh: "
        f"{med(r.bytes_out):.0f} B/s, {med(r.frames_out):.0f} frames/s sent per node "
        f"(all nodes {sum(r.bytes_out) / 1024:.1f} KB/s), CPU {mean(r.cpu_after) * 1e3:.2f} ms/s "
        f"per node, mean (unconnected {mean(r.cpu_before) * 1e3:.2f} ms/s); heartbeats missed "
        f"{r.missed}, connections lost {r.losses}, asked again {r.again}"
        + "".join(f"; refused {why!r} {k}" for why, k in sorted(r.refused.items()))
        + (f"; NOT MESHED: {len(r.failed)} nodes, e.g. {r.failed[0]}: {r.why}" if r.failed else "")
    )


def summary(r: Result) -> str:
    return (
        f"{r.n} nodes {r.mesh:.2f} s {med(r.conns):.0f} conns {med(r.rss_after):.0f} MB "
        f"{med(r.bytes_out) / 1024:.2f} KB/s {mean(r.cpu_after) * 1e3:.2f} ms/s CPU"
        + (f" ({len(r.failed)} not meshed)" if r.failed else "")
    )


def sizes(text: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError(f"not a list of whole numbers from 2: {text!r}")
    return values


def main() -> int:
    parser = Parser(description=__doc__)
    parser.add_argument("--sizes", type=sizes, default=[16, 32, 64], help="16,32,64")
    parser.add_argument("--idle", type=positive, default=5.0, help="idle window, s (5)")
    parser.add_argument(
        "--timeout", type=positive, default=30.0, help="for the mesh to form, s (30)"
    )
    parser.add_argument("--link", choices=LINKS, default="tcp", help="nodes' link (tcp)")
    parser.add_argument(
        "--dial", choices=["all", "half"], default="all", help="who dials whom (all)"
    )
    args = parser.parse_args()
    use_link(args.link)  # (the children inherit it)
    results = []
    for n in args.sizes:
        result = one_size(n, args.idle, args.dial == "half", args.timeout)
        print(describe(result), flush=True)
        results.append(result)
    print(
        f"mesh ({args.link}, dial {args.dial}, {loop_name()}): "
        + "; ".join(summary(r) for r in results)
    )
    return 1 if any(r.failed for r in results) else 0
