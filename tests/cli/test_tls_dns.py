"""A TLS cluster found by DNS: `cloudy slave` and `cloudy master` with --tls-cert,
--tls-key and --tls-ca (or $CLOUDY_TLS_*, as a Kubernetes Secret's files are given),
found through a real DNS server's SRV records; every node its own OS process.

The cluster's CA is its membership: a node whose certificate another CA signed is
named by DNS but never reached, and the run goes on without it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from dnsmasq import Dnsmasq, free_dns_port
from procs import CLOUDY, ended_by_pid

from cloudy.testing import free_port

ROOT = Path(__file__).resolve().parents[2]


def pems(folder: Path, ca: trustme.CA) -> dict[str, str]:
    """A node certificate of *ca* in *folder*: the three files' paths by flag."""
    folder.mkdir(parents=True, exist_ok=True)
    cert = ca.issue_cert("cloudy-node")  # no address: names are not what is checked
    (folder / "cert.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    (folder / "key.pem").write_bytes(cert.private_key_pem.bytes())
    (folder / "ca.pem").write_bytes(ca.cert_pem.bytes())
    return {f"--tls-{n}": str(folder / f"{n}.pem") for n in ("cert", "key", "ca")}


def flags(files: dict[str, str]) -> list[str]:
    return [word for pair in files.items() for word in pair]


@pytest.fixture
def dns_name(tmp_path: Path) -> Iterator[tuple[Dnsmasq, list[int]]]:
    """A DNS server whose SRV records name three slaves' ports on 127.0.0.1."""
    ports = [free_port() for _ in range(3)]
    srv = [("_cloudy._tcp.tls.test", "node.tls.test", p) for p in ports]
    server = Dnsmasq(tmp_path / "dns", "127.0.0.1", free_dns_port(), srv=srv)
    server.set_hosts([("node.tls.test", "127.0.0.1")])
    with server:
        server.start()
        yield server, ports


@pytest.mark.load
def test_a_tls_cluster_found_by_dns_runs_and_keeps_out_another_cas_node(
    tmp_path: Path, dns_name: tuple[Dnsmasq, list[int]]
) -> None:
    dns, ports = dns_name
    cluster, stranger = trustme.CA(), trustme.CA()
    base = dict(os.environ, CLOUDY_COOKIE=f"tls-dns-{os.getpid()}", PYTHONPATH=str(ROOT / "src"))
    find = ["--peers-dns", "tls.test", "--dns-server", dns.server, "--dns-interval", "0.5s"]
    good = pems(tmp_path / "a", cluster)
    # the second slave takes its files from the environment, as a pod from its Secret
    by_env = {f"CLOUDY_TLS_{k[6:].upper()}": v for k, v in pems(tmp_path / "b", cluster).items()}
    other = pems(tmp_path / "c", stranger)
    with ended_by_pid() as started:

        def start(*argv: str, env: dict[str, str] = base, **kw: Any) -> subprocess.Popen[str]:
            proc = subprocess.Popen(
                [*CLOUDY, *argv], env=env, text=True, stdout=subprocess.PIPE, **kw
            )
            started.append(proc)
            return proc

        def health(port: int, *extra: str) -> int:
            done = subprocess.run(
                [*CLOUDY, "health", "127.0.0.1", str(port), "--timeout", "2s", *extra],
                env=base,
                capture_output=True,
                text=True,
                timeout=30,
            )
            return done.returncode

        slave_a = start("slave", "127.0.0.1", str(ports[0]), *find, *flags(good))
        slave_b = start("slave", "127.0.0.1", str(ports[1]), *find, env=base | by_env)
        slave_c = start(
            "slave", "127.0.0.1", str(ports[2]), *find, *flags(other), stderr=subprocess.PIPE
        )
        for port in ports:
            for _ in range(60):
                if health(port, *flags(good if port != ports[2] else other)) == 0:
                    break
            else:
                raise AssertionError(f"no slave answers on {port}")
        # TLS is asked for, and only the cluster's CA opens the door
        assert health(ports[0]) == 1  # no TLS: the slave speaks TLS only
        assert health(ports[0], *flags(other)) == 1  # another CA's certificate
        assert health(ports[2], *flags(good)) == 1  # the stranger's, seen from the cluster
        master = start(
            *("master", "127.0.0.1", str(free_port()), *find, *flags(good)),
            *("--slaves", "2", "--stable-for", "1s", "--send-for", "1s", "--wait-for", "0.5s"),
            "--json",
            stderr=subprocess.PIPE,
        )
        out, err = master.communicate(timeout=90)
        assert master.returncode == 0, err
        report = json.loads(out)
        nodes = sorted(s["node"] for s in report["slaves"])
        assert nodes == sorted(f"nid://127.0.0.1:{p}:0" for p in ports[:2]), report
        assert report["agree"] and report["count"] > 0
        for slave in (slave_a, slave_b):
            slave_out, _ = slave.communicate(timeout=20)
            assert f"<{report['count']}, " in slave_out
        assert slave_c.poll() is None  # never taken: it still waits for a master
