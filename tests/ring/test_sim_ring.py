"""The experiment in the simulator: exact replay, the models against the oracle, and
bugs the simulator found, each kept as the schedule that showed it."""

from __future__ import annotations

import pytest

from cloudy.ring import expected_result
from cloudy.ring.simulated import SIM_MODELS, Schedule, run_schedule
from cloudy.ring.sweep import schedules, sweep
from cloudy.testing.sim.faults import FaultPlan


def test_a_schedule_replays_exactly_and_another_seed_runs_otherwise() -> None:
    first, again = run_schedule(Schedule(11)), run_schedule(Schedule(11))
    other = run_schedule(Schedule(12))
    assert first.digest == again.digest
    assert first.results == again.results and first.plan == again.plan
    assert other.digest != first.digest


@pytest.mark.parametrize("model", SIM_MODELS)
def test_without_faults_every_slave_has_the_oracles_result(model: str) -> None:
    out = run_schedule(Schedule(3, model, faults=False))
    assert out.violations == []
    assert out.report is not None and out.report.agree
    count, total = out.report.count, out.report.sum
    assert count > 100  # a few hundred messages: a schedule is small, not empty
    assert total == expected_result(3, count).sum
    assert out.results == {f"s{i}": (count, total) for i in range(1, 5)}


@pytest.mark.parametrize(
    ("seed", "model", "plan"),
    [
        # a slave frozen as the ring started waited in silence for a Setup its master
        # would never send (it had declared the slave lost); now it says the master
        # has gone, and ends (found at seed 793 of the pipelined model)
        (793, "pipelined", "pause:s4@0.015+1.831"),
        # a cut-off slave that finished without the master printed its result again
        # when the master's supervisor restarted its ring process (seed 15)
        (15, "ring", "pause:s4@0.203+2.245 slow:s3/s2@0.336+0.982=0.0443"),
        # a slave killed as the ring started made the master fail an assert (seed 4)
        (4, "ring", "restart:s1@0.003+1.829"),
        # a bit flipped between two live slaves changed the sum (TCP's checksum had
        # let it through): now every frame has a CRC-32, and the link is made again
        (1, "ring", "flip:s1/s2@0.1 truncate:s3/s4@0.15"),
        # a reset between two live slaves stalled every model at 0-4 messages for the
        # whole run; now the link is made again and what was lost on it sent again
        (1, "ring", "reset:s1/s2@0.05"),
        (1, "pipelined", "flip:s2/s3@0.03"),
        # a flipped bit in a frame's length made the receiver wait for bytes that
        # never came, taking the heartbeats for its body (seed 5)
        (5, "stream", "flip:s2/s3@0.03"),
        # two links broken within the stream model's 50 ms of SEND cost 62 % of the
        # messages while the first attempt waited 20 ms; it is made at once now
        (6619, "stream", "reset:s2/s4@0.026 flip:s2/s1@0.056"),
        # a slave whose loop stalled past the timeout finished without the master and
        # printed; a new ring process the master started there in that very turn did not
        # see the verdict's keeper yet (it named itself on its first turn) and printed
        # again; the finisher names it now
        (2401, "pipelined", "drift:s4=0.9905 reset:s2/s1@0.194 stall:s4@0.2+1.191"),
    ],
)
def test_a_schedule_that_once_failed_passes(seed: int, model: str, plan: str) -> None:
    """Each as the seed that showed it (or, where a read found it, seed 1) ran it."""
    out = run_schedule(Schedule(seed, model, plan=FaultPlan.parse(plan)))
    assert out.violations == []


@pytest.mark.load
@pytest.mark.parametrize("first", [1000, 2000, 3000])
def test_a_sweep_of_seeded_schedules_breaks_no_invariant(first: int) -> None:
    """40 schedules a chunk, faults drawn from each seed, every model and both ways of
    finding the slaves, every tenth re-run in another process to compare digests
    (`cloudy sim` and benchmarks/sim_schedules.py run thousands)."""
    summary = sweep(schedules(range(first, first + 40), SIM_MODELS), workers=1, rerun_every=10)
    assert summary.runs == 40
    failing = [(d.schedule.command(), d.violations) for d in summary.failing]
    assert failing == [] and summary.mismatched == []
