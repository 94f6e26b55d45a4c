"""A real DNS server for tests: dnsmasq (``make test`` installs it), ended by its PID.

`Dnsmasq` serves the records it is given — SRV (``srv-host``) and A/AAAA
(``host-record``) in its configuration, and A/AAAA records from a hosts file in a
directory it watches (`set_hosts`: records added or removed while it runs, as a
Kubernetes headless service's change when pods come and go). It answers only what it
is told (no upstream server, no /etc/hosts).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from cloudy.testing import free_port

__all__ = ["Dnsmasq", "dnsmasq_binary", "free_dns_port"]


def dnsmasq_binary() -> str:
    found = shutil.which("dnsmasq") or (
        "/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists() else None
    )
    if found is None:
        pytest.skip(
            "dnsmasq is not installed (make test installs it: apt-get install dnsmasq-base)"
        )
    return found


class Dnsmasq:
    """dnsmasq on *address*:*port*, its files in *workdir*; `start`, then `stop`."""

    def __init__(
        self,
        workdir: Path,
        address: str,
        port: int,
        *,
        srv: Iterable[tuple[str, str, int]] = (),  # (service name, target, port)
        hosts: Iterable[tuple[str, str]] = (),  # (name, address) in the config
        domain: str = "test",
        extra: Sequence[str] = (),
    ) -> None:
        self.workdir, self.address, self.port = workdir, address, port
        self.hosts_dir = workdir / "hosts.d"
        self.hosts_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"port={port}",
            f"listen-address={address}",
            "bind-interfaces",
            "no-resolv",
            "no-hosts",
            "no-daemon",
            f"local=/{domain}/",  # its own zone: an unknown name is NXDOMAIN, not REFUSED
            f"hostsdir={self.hosts_dir}",
            f"log-facility={workdir / 'dnsmasq.log'}",
            "log-queries",
            *(f"srv-host={name},{target},{p}" for name, target, p in srv),
            *(f"host-record={name},{addr}" for name, addr in hosts),
            *extra,
        ]
        self.config = workdir / "dnsmasq.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[str] | None = None

    @property
    def server(self) -> str:
        """The server as ``--dns-server`` takes it."""
        return f"{self.address}:{self.port}"

    def command(self) -> list[str]:
        return [
            dnsmasq_binary(),
            f"--conf-file={self.config}",
            f"--pid-file={self.workdir / 'pid'}",
        ]

    def start(self, prefix: Sequence[str] = ()) -> Dnsmasq:
        """Start it (inside *prefix*, e.g. ``ip netns exec NS``); return once it answers."""
        log = self.workdir / "dnsmasq.log"
        runs = log.read_text().count("started") if log.exists() else 0
        # its own output to a file, never to a pipe nobody reads (a full pipe stops it)
        with (self.workdir / "dnsmasq.out").open("a") as out:
            self.proc = subprocess.Popen(
                [*prefix, *self.command()], stdout=out, stderr=subprocess.STDOUT, text=True
            )
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.workdir / "dnsmasq.out").read_text()
                raise RuntimeError(f"dnsmasq exited with {self.proc.returncode}: {err.strip()}")
            if log.exists() and log.read_text().count("started") > runs:
                return self
            time.sleep(0.05)
        raise RuntimeError("dnsmasq did not start within 10 s")

    def set_hosts(self, records: Iterable[tuple[str, str]]) -> None:
        """Replace the watched hosts file's records ((name, address) pairs); dnsmasq
        reads it again by itself (inotify) — wait for it with `wait_reloaded`."""
        tmp = self.workdir / "hosts.tmp"
        tmp.write_text("".join(f"{addr} {name}\n" for name, addr in records))
        tmp.replace(self.hosts_dir / "cluster")

    def wait_reloaded(self, count: int, timeout: float = 10.0) -> None:
        """Until dnsmasq's log says it has read the hosts directory *count* times."""
        log = self.workdir / "dnsmasq.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.read_text().count(f"read {self.hosts_dir}") >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"dnsmasq did not read {self.hosts_dir} {count} times")

    def stop(self) -> None:
        """End it by its PID (and wait for it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.communicate(timeout=5)

    def __enter__(self) -> Dnsmasq:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_dns_port() -> int:
    """A port free for UDP (as the helper's ``free_port`` picks it) and for TCP too."""
    for _ in range(100):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free for both UDP and TCP")
