"""Shared by the benchmarks: the event loop runner, RSS, arguments, and a child's stderr."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from cloudy import ProcessId

T = TypeVar("T")

HERE = os.path.dirname(os.path.abspath(__file__))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run *coro* on uvloop where installed (as cloudy's CLI does), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def rss_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def start_child(script: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Run ``python script args...`` and wait for its first stdout line ("ready ...")."""
    child = subprocess.Popen(
        [sys.executable, script, *args], stdout=subprocess.PIPE, text=True, cwd=HERE
    )
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if not line.startswith("ready"):
        stop_child(child)
        raise RuntimeError(f"{script} {' '.join(args)} did not start: {line!r}")
    return child, line.partition(" ")[2]


def stop_child(child: subprocess.Popen[str]) -> None:
    """End *child* by its PID: SIGTERM, then SIGKILL."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run_group(
    command: list[str], *, timeout: float, env: dict[str, str] | None = None, cwd: str | None = None
) -> str:
    """*command*'s stdout; it and every process it started, in its own process group,
    end with it (by the group: also on a timeout, or when it fails). Raises
    `RuntimeError` with the end of its stderr when it exits with a status not 0."""
    child = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = child.communicate(timeout=timeout)
    finally:
        end_group(child)
    if child.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-10:])
        raise RuntimeError(f"{' '.join(command[:4])}... exited {child.returncode}:\n{tail}")
    return out


def end_group(child: subprocess.Popen[Any]) -> None:
    """End *child*'s process group: SIGTERM, then SIGKILL after 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        try:
            child.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue


def end_on_sigterm() -> None:
    """SIGTERM raises SystemExit here, so the ``finally`` blocks that end this
    benchmark's own children run when it is itself ended."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


async def serve_node(cookie: str, name: str, fn: Callable[[], Awaitable[None]]) -> None:
    """A child's node: *fn* runs as a process registered as *name*; prints "ready PORT"."""
    from cloudy import LocalNode

    async with LocalNode("127.0.0.1", 0, cookie=cookie, logger=False) as node:
        node.register(name, node.fork_process(fn))
        print("ready", node.node_id.port, flush=True)
        await asyncio.Event().wait()


async def find_served(port: int, name: str) -> ProcessId:
    """The process registered as *name* on the node at 127.0.0.1:*port* (a child's,
    as `serve_node` starts it); call it in a process of the benchmark's own node."""
    from cloudy import NodeId, WhereIsReply, expect, whereis_remote_async

    whereis_remote_async(NodeId("127.0.0.1", port), name)
    reply = await expect(WhereIsReply)
    assert reply.pid is not None, f"no {name!r} at 127.0.0.1:{port}"
    return reply.pid


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``PROG: WHAT (see PROG --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def whole(low: int, high: float = math.inf) -> Callable[[str], int]:
    """An argument type: a whole number from *low* to *high*."""
    span = f"from {low}" if high == math.inf else f"from {low} to {int(high)}"

    def parse(text: str) -> int:
        if not text.strip().lstrip("-").isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"not a whole number {span}: {text!r}")
        return int(text)

    return parse


def positive(text: str) -> float:
    """An argument type: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or value == math.inf:
        raise argparse.ArgumentTypeError(f"not a number of seconds above zero: {text!r}")
    return value


def stderr_tail(stderr: str, lines: int = 15) -> str:
    """The last *lines* lines of a child's *stderr*, indented, for a failure message."""
    tail = stderr.rstrip("\n").splitlines()[-lines:]
    if not tail:
        return "  (it wrote nothing on stderr)"
    return "\n".join(f"  | {line}" for line in tail)


LINKS = ("tcp", "unix")


def use_link(link: str) -> str:
    """Have this process's nodes, and the children it starts, link over *link*: ``tcp``
    (like the floor) or ``unix`` (cloudy's default between nodes on one machine)."""
    os.environ["CLOUDY_LOCAL_SOCKETS"] = "1" if link == "unix" else "0"
    return link
