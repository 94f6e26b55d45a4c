"""The Kubernetes deployment, run for real: hosts in network namespaces, a real DNS
server (dnsmasq) serving the headless service's records, and on each host exactly the
command, environment and probes that deploy/kubernetes/ gives its container — read
from the manifests themselves (`tests/deploy/manifests.py`), so the files and the
behaviour tested cannot drift apart. Needs root (CI runs as root) and dnsmasq
(``make test`` installs it); skipped, saying why, only where either is missing.

Each host's /etc/resolv.conf (a namespace's own, from /etc/netns/NAME/) names the DNS
host and the search domain, as a pod's names its cluster's DNS service, so that the
manifests' short name ``cloudy-slaves`` resolves as it would in the cluster.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy.manifests import container_commands, kubernetes_documents
from dnsmasq import Dnsmasq
from netns_hosts import Network, environment, hosts

DOMAIN = "cloudy.test"  # the cluster's search domain, as svc.cluster.local
SLAVES = 4
RESULT_LINE = re.compile(r"^(nid://\S+) <(\d+), (\S+)>$", re.M)


def workload(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in kubernetes_documents() if d["kind"] == kind]
    return doc


def service_name() -> str:
    (doc,) = [d for d in kubernetes_documents() if d["kind"] == "Service"]
    name: str = doc["metadata"]["name"]
    return name


class Lines:
    """A child's stream read in a thread: every line kept, waited for by pattern."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line)
            self._new.put(line)

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        for line in list(self.lines):
            if re.search(pattern, line):
                return line
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                line = self._new.get(timeout=0.1)
                if re.search(pattern, line):
                    return line
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{self.text()}")


@pytest.fixture
def cluster() -> Iterator[tuple[Network, Dnsmasq]]:
    """SLAVES + 2 hosts: the slaves', the master's, the DNS server's (the last)."""
    with hosts(SLAVES + 2) as net:
        made: list[Path] = []
        dns_namespace, dns_address = net.hosts[-1]
        for namespace, _ in net.hosts[:-1]:
            folder = Path("/etc/netns") / namespace
            folder.mkdir(parents=True, exist_ok=True)
            made.append(folder)
            (folder / "resolv.conf").write_text(
                f"nameserver {dns_address}\nsearch {DOMAIN}\noptions timeout:1 attempts:1\n"
            )
        workdir = Path(f"/tmp/cloudy-dnsmasq-{dns_namespace}")
        shutil.rmtree(workdir, ignore_errors=True)
        dns = Dnsmasq(workdir, dns_address, 53, domain=DOMAIN)
        try:
            yield net, dns
        finally:
            dns.stop()
            for folder in made:
                shutil.rmtree(folder, ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)


def records(net: Network, count: int) -> list[tuple[str, str]]:
    """The headless service's A records for the first *count* slave hosts."""
    return [(f"{service_name()}.{DOMAIN}", address) for _, address in net.hosts[:count]]


def run_cloudy(net: Network, host: int, argv: list[str], env: dict[str, str]) -> Any:
    assert argv[0] == "cloudy", argv  # the image's entrypoint
    return net.run(host, sys.executable, "-m", "cloudy", *argv[1:], env=env)


def probe(net: Network, host: int, argv: list[str], env: dict[str, str]) -> int:
    proc = run_cloudy(net, host, argv, env)
    try:
        proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    rc: int = proc.returncode
    return rc


def wait_ready(net: Network, host: int, argv: list[str], env: dict[str, str]) -> None:
    """Until the readiness probe passes, as the kubelet runs it every few seconds."""
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if probe(net, host, argv, env) == 0:
            return
        time.sleep(0.5)
    raise AssertionError(f"host {host} never became ready")


@pytest.mark.load
def test_the_manifests_cluster_forms_by_dns_and_runs_the_experiment(
    cluster: tuple[Network, Dnsmasq],
) -> None:
    net, dns = cluster
    cookie = "netns-dns-cluster"  # the Secret's value
    slave_doc, master_doc = workload("StatefulSet"), workload("Job")
    # three of the four pods are in DNS at first; the fourth's record comes later
    dns.set_hosts(records(net, SLAVES - 1))
    dns.start(prefix=["ip", "netns", "exec", net.hosts[-1][0]])

    slaves, outs, probes = [], [], []
    for i, (_, address) in enumerate(net.hosts[:SLAVES]):
        env = environment(cookie) | {"POD_IP": address}
        command, readiness, liveness = container_commands(slave_doc, host=address)
        proc = run_cloudy(net, i, command, env)
        slaves.append(Lines(proc.stderr))
        outs.append(Lines(proc.stdout))
        probes.append((readiness, liveness, env))
    for i, (readiness, _, env) in enumerate(probes):
        wait_ready(net, i, readiness, env)
    checks = [run_cloudy(net, i, liveness, env) for i, (_, liveness, env) in enumerate(probes)]
    assert [check.wait(timeout=20) for check in checks] == [0] * SLAVES
    # the probes have teeth: a wrong cookie is not a healthy node
    readiness = probes[0][0]
    assert probe(net, 0, readiness, environment("not-the-secret")) == 1

    # the DNS server stopped: each slave says so and keeps its peers; the probes pass
    dns.stop()
    for lines in slaves[: SLAVES - 1]:
        lines.wait_for(r"DNS discovery: .*keeping the \d peers known", 20.0)
    assert probe(net, 1, readiness, environment(cookie)) == 0
    dns.start(prefix=["ip", "netns", "exec", net.hosts[-1][0]])
    slaves[0].wait_for(r"DNS discovery: cloudy-slaves answers again", 20.0)

    # the master Job: it finds three, waits for the fourth, which joins when its
    # record is added; once the run has begun, a record removed kills nobody
    master_host = SLAVES
    address = net.hosts[master_host][1]
    env = environment(cookie) | {"POD_IP": address}
    (command,) = container_commands(master_doc, host=address)
    master = run_cloudy(net, master_host, command, env)
    err = Lines(master.stderr)
    time.sleep(4.0)  # it has found three by now, and waits
    assert master.poll() is None and "START" not in err.text(), err.text()
    dns.set_hosts(records(net, SLAVES))
    err.wait_for(r"START 4 of 4 slaves found", 45.0)
    dns.set_hosts([r for r in records(net, SLAVES) if r[1] != net.hosts[1][1]])
    out, _ = master.communicate(timeout=90)
    assert master.returncode == 0, err.text()
    report = json.loads(out)
    nodes = sorted(s["node"] for s in report["slaves"])
    assert nodes == sorted(f"nid://{a}:7000:0" for _, a in net.hosts[:SLAVES])
    assert report["agree"] and report["count"] > 0, report
    assert report["lost"] == [], report
    # every slave printed the same result and was ended by the master
    for lines in slaves:
        lines.wait_for(r"ended by the master", 20.0)
    printed = {m for lines in outs for m in RESULT_LINE.findall(lines.text())}
    assert len(printed) == SLAVES, [lines.text() for lines in outs]
    assert {(int(c), float(t)) for _, c, t in printed} == {(report["count"], report["sum"])}
