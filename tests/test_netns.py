"""Several hosts for real: network namespaces joined by veth pairs on a bridge.

Each host is a namespace with one address in 198.51.100.0/24 (as the seed's
network); the bridge lives in a namespace of its own, so nothing here touches
the machine's own interfaces. Discovery crosses the bridge by real multicast.
Needs root (CI runs as root); skipped, saying why, only where namespaces cannot
be made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULT_LINE = re.compile(r"^(nid://\S+) <(\d+), (\S+)>$", re.M)


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


@pytest.fixture
def network() -> Iterator[Network]:
    tag = f"{os.getpid() % 100000}"
    bridge = f"cloudy-br-{tag}"
    hosts = [(f"cloudy-h{i}-{tag}", f"198.51.100.{i}") for i in range(1, 5)]
    made: list[str] = []
    net = Network(hosts, [])
    try:
        try:
            ip("netns", "add", bridge)
        except (OSError, subprocess.CalledProcessError) as e:
            detail = e.stderr.strip() if isinstance(e, subprocess.CalledProcessError) else e
            pytest.skip(f"cannot create network namespaces here: {detail}")
        made.append(bridge)
        ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        ip("-n", bridge, "link", "set", "br0", "up")
        for i, (namespace, address) in enumerate(hosts, 1):
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


def test_the_experiment_across_three_hosts_over_real_multicast(network: Network) -> None:
    env = environment("netns-experiment")
    slaves = [
        network.run(i, sys.executable, "-m", "cloudy.cli", "slave", address, "7000", env=env)
        for i, (_, address) in enumerate(network.hosts[:3])
    ]
    master_address = network.hosts[3][1]
    master = network.run(
        3,
        *(sys.executable, "-m", "cloudy.cli", "master", master_address, "7000"),
        *("300000", "200000", "3", "--slaves", "3", "--json"),
        env=env,
    )
    out, err = master.communicate(timeout=90)
    assert master.returncode == 0, err
    report = json.loads(out)
    nodes = sorted(s["node"] for s in report["slaves"])
    assert nodes == [f"nid://198.51.100.{i}:7000:0" for i in (1, 2, 3)]
    assert report["agree"] and report["count"] > 0
    # the slaves' say lines were redirected to the master
    for i in (1, 2, 3):
        assert re.search(rf"pid://198\.51\.100\.{i}:7000:0:\d+: ring position", err), err
    # the master terminated the slaves: each ends by itself, after printing its result
    for slave in slaves:
        slave_out, _ = slave.communicate(timeout=15)
        assert slave.returncode == 0
        ((_, count, total),) = RESULT_LINE.findall(slave_out)
        assert (int(count), float(total)) == (report["count"], report["sum"])


def test_the_minimal_example_across_hosts(network: Network) -> None:
    env = environment("netns-minimal")
    example = str(ROOT / "examples" / "minimal.py")
    slaves = [
        network.run(i, sys.executable, example, "slave", address, "8080", env=env)
        for i, (_, address) in enumerate(network.hosts[:3])
    ]
    for _, address in network.hosts[:3]:
        network.wait_listening(3, address, 8080)
    master = network.run(3, sys.executable, example, "master", network.hosts[3][1], "8080", env=env)
    out, err = master.communicate(timeout=60)
    assert master.returncode == 0, err
    found = re.fullmatch(r"Slaves: \[(.*)\]\n", out)
    assert found is not None, out
    assert sorted(found.group(1).split(", ")) == [f"nid://198.51.100.{i}:8080:0" for i in (1, 2, 3)]
    for slave in slaves:
        slave.communicate(timeout=15)
        assert slave.returncode == 0


FIND_FROM_BOTH_ADDRESSES = """
import asyncio, json, sys
from cloudy.backend.simplelocalnet import initialize_backend

async def main():
    backends = [initialize_backend(h, 0, multicast_port=7999) for h in ("127.0.0.1", sys.argv[1])]
    try:
        for backend in backends:
            await backend.new_local_node()
        found = {
            b.host: [str(b.node.node_id), *map(str, await b.find_peers(0.5))] for b in backends
        }
    finally:
        for backend in backends:
            await backend.close()
    print(json.dumps(found))

asyncio.run(main())
"""


def test_a_node_on_loopback_and_one_on_the_lan_address_of_one_host_stay_apart(
    network: Network,
) -> None:
    env = environment("netns-apart")
    (_, here), (_, there) = network.hosts[:2]
    slave = network.run(
        1,
        *(sys.executable, "-m", "cloudy.cli", "slave", there, "7000"),
        *("--discovery-port", "7999"),
        env=env,
    )
    network.wait_listening(0, there, 7000)
    # both nodes run at once in one host, so each could hear the other's requests
    finder = network.run(0, sys.executable, "-c", FIND_FROM_BOTH_ADDRESSES, here, env=env)
    out, err = finder.communicate(timeout=30)
    assert finder.returncode == 0, err
    found = json.loads(out)
    loopback_node, *loopback_found = found["127.0.0.1"]
    lan_node, *lan_found = found[here]
    assert loopback_found == [loopback_node]  # nothing from the LAN answers over loopback
    assert sorted(lan_found) == sorted([lan_node, f"nid://{there}:7000:0"])
    assert slave.poll() is None


def test_doctor_inside_a_host_sees_multicast_and_no_loopback_warning(network: Network) -> None:
    env = environment("netns-doctor")
    doctor = network.run(
        0, sys.executable, "-m", "cloudy.cli", "doctor", network.hosts[0][1], env=env
    )
    out, err = doctor.communicate(timeout=30)
    assert doctor.returncode == 0, out + err
    assert "comes back" in out
    assert "loopback" not in out
