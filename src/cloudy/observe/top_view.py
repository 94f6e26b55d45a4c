"""What ``cloudy top`` and ``cloudy ps`` show, made from samples (no network here).

Each function takes the newest `Sample` and the one before it (None at first) and
gives a rich renderable or plain rows: rates per second are the differences of the
counters between the two samples divided by the seconds between them, and are
unknown (shown as ``-``) without an earlier sample of the same node or process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from .. import NodeId, NodeStats, PeerStats, ProcessSummary
from .sample import Sample

__all__ = [
    "node_table",
    "per_second",
    "process_rows",
    "process_table",
    "screen",
]

HEARTBEAT_STYLE = {"ok": "green", "late": "yellow", "lost": "bold red"}
# A process's names beyond this many characters are cut short (… at the end).
NAMES_WIDTH = 40
STATE_STYLE = {"up": "", "busy": "yellow", "handshake": "dim", "closed": "red"}


def per_second(now: int, before: int | None, seconds: float) -> float | None:
    """How fast a counter went from *before* to *now* (None: unknown, or it went back)."""
    if before is None or seconds <= 0 or now < before:
        return None
    return (now - before) / seconds


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.1f}{prefix}"
    return f"{value:.0f}" if value >= 10 or value == 0 else f"{value:.1f}"


def _uptime(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _short(node: NodeId) -> str:
    return f"{node.host}:{node.port}"


def _earlier(now: NodeStats, before: Sample | None) -> NodeStats | None:
    """The same node in the earlier sample, unless it has restarted since."""
    if before is None:
        return None
    then = before.nodes.get(now.node)
    if not isinstance(then, NodeStats) or then.uptime > now.uptime:
        return None
    return then


def _counters(stats: NodeStats) -> tuple[int, int, int, int]:
    return (stats.messages_in, stats.messages_out, stats.bytes_in, stats.bytes_out)


def _peer_line(peer: PeerStats) -> Text:
    line = Text(_short(peer.node) + " ")
    line.append(peer.heartbeat, HEARTBEAT_STYLE.get(peer.heartbeat, ""))
    if peer.state != "up":
        line.append(f" {peer.state}", STATE_STYLE.get(peer.state, ""))
    return line


def node_table(now: Sample, before: Sample | None) -> Table:
    """One row per node: id, uptime, processes, connections, messages and bytes in and
    out per second, and the heartbeat of each peer (the observing node left out)."""
    seconds = now.at - before.at if before is not None else 0.0
    table = Table(title="nodes", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("node", no_wrap=True)
    for name in ("up", "procs", "conns", "msgs in/s", "msgs out/s", "in B/s", "out B/s"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("peers (heartbeat)", no_wrap=True)
    for node, stats in now.nodes.items():
        mark = "▶ " if node == now.selected else "  "
        if not isinstance(stats, NodeStats):
            table.add_row(mark + _short(node), *["-"] * 7, Text(stats, "bold red"))
            continue
        then = _earlier(stats, before)
        olds = _counters(then) if then is not None else (None,) * 4
        pairs = zip(_counters(stats), olds, strict=True)
        rates = [_rate(per_second(new, old, seconds)) for new, old in pairs]
        peers = [p for p in stats.peers if p.node != now.me]
        table.add_row(
            mark + _short(node),
            _uptime(stats.uptime),
            str(stats.processes),
            str(sum(p.state != "closed" for p in peers)),
            *rates,
            Text("\n").join(_peer_line(p) for p in peers) if peers else Text("-", "dim"),
        )
    return table


def process_rows(now: Sample, before: Sample | None) -> list[dict[str, Any]]:
    """The selected node's processes as plain values (what ``cloudy ps --json``
    prints): pid, names, waiting, mailbox_length, links and monitors (pids),
    messages_in and messages_out (totals) and their rates (None: unknown)."""
    if not isinstance(now.processes, list):
        return []
    seconds = now.at - before.at if before is not None else 0.0
    earlier: dict[str, ProcessSummary] = {}
    if before is not None and before.selected == now.selected:
        node = now.nodes.get(now.selected) if now.selected is not None else None
        restarted = isinstance(node, NodeStats) and _earlier(node, before) is None
        if isinstance(before.processes, list) and not restarted:
            earlier = {str(p.pid): p for p in before.processes}
    rows = []
    for proc in now.processes:
        info, then = proc.info, earlier.get(str(proc.pid))
        # a process born since the last sample sent and received all it did since then
        start_in, start_out = (then.info.messages_in, then.info.messages_out) if then else (0, 0)
        known = before is not None
        rows.append(
            {
                "pid": str(proc.pid),
                "names": list(info.names),
                "waiting": info.waiting,
                "mailbox_length": info.mailbox_length,
                "links": [str(p) for p in info.links],
                "monitors": [str(p) for p, _ in info.monitors],
                "messages_in": info.messages_in,
                "messages_out": info.messages_out,
                "messages_in_per_s": per_second(info.messages_in, start_in, seconds)
                if known
                else None,
                "messages_out_per_s": per_second(info.messages_out, start_out, seconds)
                if known
                else None,
            }
        )
    return rows


def process_table(now: Sample, before: Sample | None) -> RenderableType:
    """The selected node's processes, one row each (or why they cannot be shown)."""
    if now.selected is None:
        return Text("no node to show the processes of", "dim")
    title = f"processes of {now.selected}"
    if isinstance(now.processes, str):
        return Text(f"{title}: {now.processes}", "bold red")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("name", no_wrap=True, max_width=NAMES_WIDTH, overflow="ellipsis")
    table.add_column("waiting in", no_wrap=True)
    for name in ("mailbox", "links", "monitors", "msgs in/s", "msgs out/s"):
        table.add_column(name, justify="right", no_wrap=True, min_width=len(name))
    for row in process_rows(now, before):
        mailbox = row["mailbox_length"]
        table.add_row(
            row["pid"].rpartition(":")[2],
            ", ".join(row["names"]) or Text("-", "dim"),
            row["waiting"],
            Text(str(mailbox), "bold yellow" if mailbox >= 1000 else ""),
            str(len(row["links"])),
            str(len(row["monitors"])),
            _rate(row["messages_in_per_s"]),
            _rate(row["messages_out_per_s"]),
        )
    return table


def screen(
    now: Sample, before: Sample | None, every: float, keys: bool, notes: Iterable[str] = ()
) -> Group:
    """The whole ``cloudy top`` view: a header (with *notes*, the latest log lines), the
    nodes, the selected node's processes."""
    count = len(now.nodes)
    header = Text.assemble(
        ("cloudy top", "bold"),
        f"  {count} node{'s' if count != 1 else ''}, every {every:g} s, "
        f"seen from {now.me} (left out of the peers)",
    )
    if keys:
        header.append("\nn/p: next/previous node   q: quit", "dim")
    for note in notes:
        header.append(f"\nlog: {note}", "yellow")
    if not now.nodes:
        return Group(header, Text("no node found yet", "yellow"))
    return Group(header, node_table(now, before), process_table(now, before))
