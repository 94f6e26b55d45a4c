"""Several hosts for real: network namespaces joined by veth pairs on a bridge.

Each host is a namespace with one address in 198.51.100.0/24 (as the seed's
network); the bridge lives in a namespace of its own, so nothing here touches
the machine's own interfaces. Needs root (CI runs as root); `hosts` skips the
test, saying why, only where namespaces cannot be made.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@dataclass
class Network:
    hosts: list[tuple[str, str]]  # (namespace, address)
    started: list[subprocess.Popen[str]]

    def run(self, host: int, *command: str, env: dict[str, str]) -> subprocess.Popen[str]:
        """Start *command* on host number *host*; it is ended by its PID afterwards."""
        namespace, _ = self.hosts[host]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *command],  # ip execs: same PID
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.started.append(proc)
        return proc

    def wait_listening(self, host: int, address: str, port: int) -> None:
        """Until *address*:*port* accepts a TCP connection from host number *host*."""
        probe = (
            "import socket, sys, time\n"
            "for _ in range(200):\n"
            "    try:\n"
            f"        socket.create_connection(({address!r}, {port}), 0.5).close(); sys.exit(0)\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n"
            "sys.exit(1)\n"
        )
        namespace, _ = self.hosts[host]
        subprocess.run(
            ["ip", "netns", "exec", namespace, sys.executable, "-c", probe], check=True, timeout=30
        )


@contextlib.contextmanager
def hosts(count: int) -> Iterator[Network]:
    """*count* hosts, 198.51.100.1 and on, on one bridge; afterwards every process
    started on them is killed by its PID and every namespace deleted."""
    tag = f"{os.getpid() % 100000}"
    bridge = f"cloudy-br-{tag}"
    made: list[str] = []
    net = Network([(f"cloudy-h{i}-{tag}", f"198.51.100.{i}") for i in range(1, count + 1)], [])
    try:
        try:
            ip("netns", "add", bridge)
        except (OSError, subprocess.CalledProcessError) as e:
            detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else e
            pytest.skip(f"cannot create network namespaces here: {detail}")
        made.append(bridge)
        ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", bridge, "link", "set", "br0", "up")
        for i, (namespace, address) in enumerate(net.hosts, 1):
            ip("netns", "add", namespace)
            made.append(namespace)
            ip("-n", namespace, "link", "add", "eth0", "type", "veth", "peer", "name", f"p{i}")
            ip("-n", namespace, "link", "set", f"p{i}", "netns", bridge)
            ip("-n", bridge, "link", "set", f"p{i}", "master", "br0")
            ip("-n", bridge, "link", "set", f"p{i}", "up")
            ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
        yield net
    finally:
        for proc in net.started:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
        for namespace in reversed(made):
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", namespace)


def environment(cookie: str) -> dict[str, str]:
    return dict(os.environ, CLOUDY_COOKIE=cookie, PYTHONPATH=str(ROOT / "src"))
