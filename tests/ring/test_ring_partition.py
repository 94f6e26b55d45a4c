"""A network partition during the experiment: four `cloudy slave`s and a `cloudy
master`, each on a host of its own (`netns_hosts`), and half a second into SEND one
slave host cut off from every other until the end, by nftables rules inside its own
namespace (the machine's firewall is never touched). The majority closes the ring
around it and agrees; the cut-off slave says it has no agreed result, never a
number. Needs root and nft (`make test` installs nftables); skipped, saying why,
without them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from netns_hosts import Network, environment, hosts
from test_ring_faults import CLOUDY, PLAIN_RESULT, Reader

from cloudy.ring import expected_result

pytestmark = pytest.mark.load

SEED = 11
CUT_OFF = 2  # the slave host cut off: 198.51.100.3
# Everything but loopback dropped, both ways (the table itself is made beforehand).
CUT = """
table inet partition {
    chain input { type filter hook input priority 0; policy drop; iif "lo" accept; }
    chain output { type filter hook output priority 0; policy drop; oif "lo" accept; }
}
"""
# a surviving slave's log line on the master: where the ring was when it closed
CLOSED = re.compile(r"ring closed around position\(s\) \[\d+\] at message (\d+): ", re.M)


@pytest.fixture
def network() -> Iterator[Network]:
    with hosts(5) as net:
        yield net


def nft(network: Network, host: int, ruleset: str) -> subprocess.CompletedProcess[str]:
    """Load *ruleset* into the namespace of host number *host* (only there)."""
    found = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if found is None:
        pytest.skip("nft is not installed (`make test` installs it: apt-get install nftables)")
    namespace, _ = network.hosts[host]
    return subprocess.run(
        ["ip", "netns", "exec", namespace, found, "-f", "-"],
        input=ruleset,
        capture_output=True,
        text=True,
        timeout=10,
    )


def ring_closed(log: Reader, timeout: float) -> int:
    """The highest message a surviving slave had seen when the ring closed (its log)."""
    deadline = time.monotonic() + timeout
    while (found := CLOSED.search(log.text)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the ring never closed, in:\n{log.text}")
        time.sleep(0.05)
    return int(found.group(1))


def test_a_slave_cut_off_by_a_partition_is_left_out_and_the_majority_agrees(
    network: Network,
) -> None:
    made = nft(network, CUT_OFF, "table inet partition\n")  # an empty table: no effect yet
    if made.returncode != 0:
        pytest.skip(f"nftables does not work in a network namespace here: {made.stderr.strip()}")
    env = environment("netns-partition")
    slaves = [
        network.run(i, *CLOUDY, "slave", address, "7000", "--detect", "2s", env=env)
        for i, (_, address) in enumerate(network.hosts[:4])
    ]
    outs = [Reader(s.stdout) for s in slaves]
    master = network.run(
        4,
        *(*CLOUDY, "master", network.hosts[4][1], "7000", "4000000", "1000000", str(SEED)),
        *("--slaves", "4", "--json", "--detect", "2s"),
        env=env,
    )
    progress, report_out = Reader(master.stderr), Reader(master.stdout)
    progress.wait_for(r"^cloudy: SEND", 60)
    time.sleep(0.5)
    cut = nft(network, CUT_OFF, CUT)
    assert cut.returncode == 0, cut.stderr
    # the cut-off slave is declared lost after 2 s: SEND (4 s) still has 1.5 s to go
    at_close = ring_closed(progress, 15)
    assert master.wait(timeout=30) == 0, progress.text
    report = json.loads(report_out.wait_for(r"^\{.*\}$", 10).group(0))

    cut_off = f"nid://{network.hosts[CUT_OFF][1]}:7000:0"
    assert report["agree"] and len(report["slaves"]) == 3, report
    assert report["lost"] == [cut_off], report
    assert report["count"] > at_close, (report, progress.text)  # it went on after the cut
    assert report["sum"] == expected_result(SEED, report["count"]).sum
    for i, out in enumerate(outs):
        if i != CUT_OFF:
            line = out.wait_for(PLAIN_RESULT, 10)
            assert line.group(1) == f"nid://{network.hosts[i][1]}:7000:0"
            assert (int(line.group(2)), float(line.group(3))) == (report["count"], report["sum"])
    # the cut-off one gives up on agreeing (no majority answers within 10 s): no number
    outs[CUT_OFF].wait_for(r"has no agreed result", 20)
    assert not re.search(r"<\d+, \S+>", outs[CUT_OFF].text), outs[CUT_OFF].text
