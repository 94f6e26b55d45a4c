"""Helpers for tests that run nodes in other OS processes.

    with NodeProcess("my_module", cookie="c") as peer:   # imports my_module there
        ... peer.node_id ...                              # nid://127.0.0.1:PORT:0

`NodeProcess` starts ``python -m cloudy.testing MODULE ...`` (a node that imports
MODULE, so its ``@remotable`` functions and message types exist there, runs
MODULE's ``setup`` coroutine as a process if it has one, and waits), waits until
it listens, and on leaving ends it by its PID: SIGTERM, then SIGKILL, whatever
happened in the block. Its stderr goes to a file, readable with `log`. With
``nofile=N`` the child lowers its soft limit on open files to N before its node
starts (as ``ulimit -n N`` would).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from .. import LocalNode
from ..aio import run
from ..errors import CloudyError
from ..identity import NodeId
from .ports import free_port

__all__ = ["NodeProcess", "NodeStartError", "free_port"]


class NodeStartError(CloudyError):
    """A child node exited or stayed silent instead of starting (its log is in the message)."""


class NodeProcess:
    """A node in a child OS process, for the length of a ``with`` block."""

    def __init__(
        self,
        module: str,
        *,
        cookie: str,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_timeout: float = 5.0,
        env: dict[str, str] | None = None,
        start_timeout: float = 20.0,
        nofile: int | None = None,
    ) -> None:
        self.module = module
        self.cookie = cookie
        self.host = host
        self.port = port or free_port(host=host)
        self.node_id = NodeId(host, self.port)
        self.heartbeat_timeout = heartbeat_timeout
        self.env = env
        self.start_timeout = start_timeout
        self.nofile = nofile
        self.proc: subprocess.Popen[bytes] | None = None
        self._log = Path(tempfile.mkstemp(prefix="cloudy-node-", suffix=".log")[1])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        """What the node wrote on stderr so far."""
        return self._log.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The log once it holds *text* (the node may still be catching up); else raise."""
        deadline = time.monotonic() + timeout
        while text not in (log := self.log()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the log of {self.node_id}:\n{log}")
            time.sleep(0.02)
        return log

    def __enter__(self) -> NodeProcess:
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), *sys.path]))
        with open(self._log, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "cloudy.testing", self.module),
                    *(self.host, str(self.port), "--cookie", self.cookie),
                    *("--heartbeat", str(self.heartbeat_timeout)),
                    *(("--nofile", str(self.nofile)) if self.nofile else ()),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise NodeStartError(f"node {self.node_id} exited at start:\n{self.log()}")
            if "cloudy.testing: ready" in self.log():
                return
            time.sleep(0.02)
        raise NodeStartError(f"node {self.node_id} did not start in {self.start_timeout} s")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def signal(self, sig: int) -> None:
        """Send *sig* to the node's process."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self) -> None:
        """End the process by its PID (SIGCONT first, in case it was stopped)."""
        proc = self.proc
        if proc is None:
            return
        for sig in (signal.SIGCONT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):
                if proc.poll() is None:
                    proc.send_signal(sig)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            self._log.unlink()


async def _serve(module: str, host: str, port: int, cookie: str, heartbeat: float) -> None:
    mod = importlib.import_module(module)
    async with LocalNode(host, port, cookie=cookie, heartbeat_timeout=heartbeat) as node:
        setup = getattr(mod, "setup", None)
        if setup is not None:
            node.fork_process(setup)
        print(f"cloudy.testing: ready {node.node_id}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m cloudy.testing")
    parser.add_argument("module")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--cookie", required=True)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    parser.add_argument("--nofile", type=int, default=None)
    args = parser.parse_args()
    if args.nofile:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        soft = args.nofile if hard == resource.RLIM_INFINITY else min(args.nofile, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    run(_serve(args.module, args.host, args.port, args.cookie, args.heartbeat))
