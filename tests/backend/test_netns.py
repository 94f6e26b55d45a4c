"""Several hosts for real: network namespaces joined by veth pairs on a bridge
(`netns_hosts`). Discovery crosses the bridge by real multicast. Needs root (CI
runs as root); skipped, saying why, only where namespaces cannot be made.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator

import pytest
from netns_hosts import ROOT, Network, environment, hosts

RESULT_LINE = re.compile(r"^(nid://\S+) <(\d+), (\S+)>$", re.M)


@pytest.fixture
def network() -> Iterator[Network]:
    with hosts(4) as net:
        yield net


def test_the_experiment_across_three_hosts_over_real_multicast(network: Network) -> None:
    env = environment("netns-experiment")
    slaves = [
        network.run(i, sys.executable, "-m", "cloudy", "slave", address, "7000", env=env)
        for i, (_, address) in enumerate(network.hosts[:3])
    ]
    master_address = network.hosts[3][1]
    master = network.run(
        3,
        *(sys.executable, "-m", "cloudy", "master", master_address, "7000"),
        *("300000", "200000", "3", "--slaves", "3", "--json"),
        env=env,
    )
    out, err = master.communicate(timeout=90)
    assert master.returncode == 0, err
    report = json.loads(out)
    nodes = sorted(s["node"] for s in report["slaves"])
    assert nodes == [f"nid://198.51.100.{i}:7000:0" for i in (1, 2, 3)]
    assert report["agree"] and report["count"] > 0
    # piped, the master told each phase in a line (the slaves' logs coming to the master
    # are tested in test_simplelocalnet)
    assert "START 3 of 3 slaves found" in err and "STOP " in err, err
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
        *(sys.executable, "-m", "cloudy", "slave", there, "7000"),
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
    doctor = network.run(0, sys.executable, "-m", "cloudy", "doctor", network.hosts[0][1], env=env)
    out, err = doctor.communicate(timeout=30)
    assert doctor.returncode == 0, out + err
    assert "comes back" in out
    assert "loopback" not in out
