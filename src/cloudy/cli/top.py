"""``cloudy top`` and ``cloudy ps``: the nodes of a cluster and their processes, live.

``cloudy top [NODE...]`` watches the given nodes, or those discovery finds (looking
again every `REDISCOVER` seconds), and on a terminal redraws every ``--interval``:
n and p (or the arrow keys) select the next or previous node whose processes are
shown, q or Ctrl-C quits. Piped, or with ``--once``, it prints one view. ``cloudy ps
NODE`` prints that node's processes once (``--json``: as a JSON list). Both take two
samples ``--interval`` apart to give rates per second (`cloudy.observe.top_view`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import termios
import time
import tty
from collections import deque
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .. import CloudyError, NodeId, NodeStats
from ..aio import run
from ..observe.sample import Observer, Sample
from ..observe.top_view import process_rows, process_table, screen
from .args import UsageError

__all__ = ["REDISCOVER", "cmd_ps", "cmd_top"]

# How often `cloudy top` looks for nodes again when none were named.
REDISCOVER = 5.0
# The host of the observing node when neither --host nor a NODE names one.
DEFAULT_HOST = "127.0.0.1"
# Piped, the tables are as wide as they need (up to this), not cut to 80 columns.
PIPE_WIDTH = 200

# How many of the latest log lines the view shows (written on stderr, they would
# scribble over it).
LOG_LINES = 3

NEXT = ("n", "\x1b[C", "\x1b[B", "\t")
PREVIOUS = ("p", "\x1b[D", "\x1b[A")


def _observer(args: argparse.Namespace, nodes: list[NodeId]) -> Observer:
    options: dict[str, Any] = {}
    if args.cookie is not None:
        options["cookie"] = args.cookie
    if args.discovery_port is not None:
        options["multicast_port"] = args.discovery_port
    if args.peers is not None:
        options["peers"] = args.peers
    host = args.host or (nodes[0].host if nodes else DEFAULT_HOST)
    return Observer(host, nodes, **options)


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)


def cmd_ps(args: argparse.Namespace) -> int:
    """``cloudy ps NODE``: the node's processes, once."""
    now, before = run(_ps(args))
    if isinstance(now.processes, str):
        raise CloudyError(f"cannot list the processes of {args.node}: {now.processes}")
    if args.json:
        print(json.dumps(process_rows(now, before)))
    else:
        _console().print(process_table(now, before))
    return 0


async def _ps(args: argparse.Namespace) -> tuple[Sample, Sample | None]:
    async with _observer(args, [args.node]) as observer:
        before = None
        if args.interval > 0:
            before = await observer.sample(args.node)
            if isinstance(before.processes, str):
                return before, None
            await asyncio.sleep(args.interval)
        return await observer.sample(args.node), before


def cmd_top(args: argparse.Namespace) -> int:
    """``cloudy top [NODE...]``: every node, and the processes of one."""
    if args.interval <= 0:
        raise UsageError("the refresh interval must be longer than zero")
    try:
        return run(_top(args, live=sys.stdout.isatty() and not args.once))
    except KeyboardInterrupt:  # Ctrl-C is how one leaves top: not a failure
        return 0


async def _top(args: argparse.Namespace, live: bool) -> int:
    async with _observer(args, args.nodes) as observer:
        if not live:
            await _discover(observer, args.node)
            return await _once(observer, args.node, args.interval)
        await _watch(observer, args.node, args.interval)
        return 0


async def _discover(observer: Observer, selected: NodeId | None) -> None:
    """Find the nodes (once); the *selected* one is watched too, found or not."""
    await observer.discover()
    if selected is not None and selected not in observer.known:
        observer.known.append(selected)


async def _once(observer: Observer, selected: NodeId | None, interval: float) -> int:
    if not observer.known:
        where = observer.describe_discovery()
        print(f"cloudy: no node answered ({where}); try: cloudy doctor HOST", file=sys.stderr)
        return 1
    selected = selected or observer.known[0]
    before = await observer.sample(selected)
    await asyncio.sleep(interval)
    now = await observer.sample(selected)
    _console().print(screen(now, before, interval, keys=False))
    return 0 if any(isinstance(s, NodeStats) for s in now.nodes.values()) else 1


async def _watch(observer: Observer, selected: NodeId | None, interval: float) -> None:
    """Redraw every *interval* s until q (or Ctrl-C); look for nodes in the background."""
    rediscover: asyncio.Task[None] | None = None
    keys: asyncio.Queue[str] = asyncio.Queue()
    interactive = sys.stdin.isatty()
    before: Sample | None = None
    log = _RecentLog()
    try:
        with (
            _keys(keys) if interactive else contextlib.nullcontext(),
            _logging_to(log),
            Live(console=Console(), screen=True, auto_refresh=False) as display,
        ):
            where = observer.describe_discovery() if not observer.given else "the nodes given"
            display.update(Text(f"cloudy top: looking for nodes ({where})"), refresh=True)
            await _discover(observer, selected)
            rediscover = asyncio.create_task(_rediscover(observer))
            while True:
                known = observer.known
                if selected not in known:
                    selected = known[0] if known else None
                now = await observer.sample(selected)
                view = screen(now, before, interval, interactive, notes=log.lines)
                display.update(view, refresh=True)
                before = now
                key = await _next_key(keys, time.monotonic() + interval)
                if key == "q":
                    return
                if key and selected is not None:
                    step = 1 if key in NEXT else -1 if key in PREVIOUS else 0
                    selected = known[(known.index(selected) + step) % len(known)]
    finally:
        if rediscover is not None:
            rediscover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rediscover


class _RecentLog(logging.Handler):
    """The latest `LOG_LINES` warnings logged, with their time, for the view."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[str] = deque(maxlen=LOG_LINES)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {record.getMessage()}")


@contextlib.contextmanager
def _logging_to(handler: logging.Handler) -> Iterator[None]:
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


async def _rediscover(observer: Observer) -> None:
    while True:
        await asyncio.sleep(REDISCOVER)
        try:
            await observer.discover()
        except (CloudyError, OSError) as e:  # shown in the view; the next round may do
            logging.getLogger("cloudy.cli.top").warning("discovery failed: %s", e)


async def _next_key(keys: asyncio.Queue[str], deadline: float) -> str | None:
    """The next key pressed that top knows, or None once *deadline* passes."""
    while (left := deadline - time.monotonic()) > 0:
        try:  # (not wait_for: on Python 3.11 it can swallow a Ctrl-C's cancellation)
            async with asyncio.timeout(left):
                key = await keys.get()
        except TimeoutError:
            return None
        key = key.lower() if len(key) == 1 else key
        if key == "q" or key in NEXT or key in PREVIOUS:
            return key
    return None


@contextlib.contextmanager
def _keys(keys: asyncio.Queue[str]) -> Iterator[None]:
    """Keys pressed on the terminal, one at a time into *keys* (no Enter needed; Ctrl-C
    still interrupts); the terminal's mode is restored on leaving."""
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    loop = asyncio.get_running_loop()
    tty.setcbreak(fd)

    def read() -> None:
        keys.put_nowait(os.read(fd, 16).decode(errors="replace"))

    loop.add_reader(fd, read)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
