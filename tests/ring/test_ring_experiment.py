"""The experiment end to end on real nodes talking over TCP on loopback.

Each slave is its own `LocalNode` (own listener, own connections); they share this
test's event loop, which keeps the suite fast. `test_cli.py` runs the same with
every node in its own OS process.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from cloudy import LocalNode, NodeId
from cloudy.ring import ExperimentError, Params, Report, expected_result, run_experiment

COOKIE = "ring-experiment-test"
RESULT_LINE = re.compile(r"^(nid://\S+) <(\d+), (\S+)>$", re.M)


@pytest.fixture
async def cluster() -> AsyncIterator[list[LocalNode]]:
    """Up to five started nodes (the first is the master); all closed afterwards."""
    nodes: list[LocalNode] = []
    try:
        for _ in range(5):
            node = LocalNode("127.0.0.1", 0, cookie=COOKIE)
            await node.start()
            nodes.append(node)
        yield nodes
    finally:
        for node in nodes:
            await node.close()


async def run(cluster: list[LocalNode], slaves: int, seed: int = 0) -> Report:
    master, nodes = cluster[0], cluster[1 : 1 + slaves]
    params = Params(send_for=0.5, wait_for=0.3, seed=seed)
    report: Report = await master.run_process(run_experiment, [n.node_id for n in nodes], params)
    return report


@pytest.mark.parametrize("slaves", [1, 2, 4])
async def test_every_slave_prints_the_same_result_and_it_can_be_recomputed(
    cluster: list[LocalNode], slaves: int, capsys: pytest.CaptureFixture[str]
) -> None:
    report = await run(cluster, slaves, seed=7)

    printed = RESULT_LINE.findall(capsys.readouterr().out)
    expected_nodes = sorted(str(n.node_id) for n in cluster[1 : 1 + slaves])
    assert sorted(node for node, _, _ in printed) == expected_nodes
    assert len({(count, total) for _, count, total in printed}) == 1
    assert report.agree
    assert report.count > 0
    assert [s.node for s in report.slaves] == sorted(
        expected_nodes, key=lambda s: NodeId.parse(s).port
    )
    expected = expected_result(7, report.count)
    assert report.sum == expected.sum
    assert printed[0][1:] == (str(expected.count), repr(expected.sum))


async def test_different_seeds_give_different_sums(cluster: list[LocalNode]) -> None:
    first = await run(cluster, 2, seed=1)
    second = await run(cluster, 2, seed=2)
    assert first.agree and second.agree
    assert first.sum == expected_result(1, first.count).sum
    assert second.sum == expected_result(2, second.count).sum
    assert first.sum != second.sum


async def test_nothing_is_generated_after_the_send_period(cluster: list[LocalNode]) -> None:
    report = await run(cluster, 4)
    # `generated`: the highest index any slave had broadcast when it acknowledged
    # GRACE; `seen_at_stop`: the highest index any slave had received at STOP.
    assert report.generated > 0
    assert report.seen_at_stop == report.generated
    assert report.count <= report.generated


async def test_a_ring_of_one_is_its_own_left_neighbour(cluster: list[LocalNode]) -> None:
    report = await run(cluster, 1)
    assert report.agree and report.count > 0
    assert report.count == report.generated


async def test_no_slaves_is_an_error(cluster: list[LocalNode]) -> None:
    with pytest.raises(ExperimentError, match="no slaves"):
        await cluster[0].run_process(run_experiment, [], Params(0.1, 0.1, 0))


async def test_a_node_that_is_not_there_is_reported(cluster: list[LocalNode]) -> None:
    closed = cluster[4]
    gone = closed.node_id
    await closed.close()
    with pytest.raises(ExperimentError, match="cannot start the ring process"):
        await cluster[0].run_process(run_experiment, [gone], Params(0.1, 0.1, 0))
