"""``cloudy sim``: sweeps of seeded schedules, one seed replayed, its trace, its JSON.

The command runs as a child process (its sweep's workers are its children, in its
own session): each is ended by its PID, and its session's, whatever the test does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
from typing import Any

import pytest
from procs import CLOUDY, ended_by_pid

from cloudy.cli import main
from cloudy.ring import simulated, sweep

SUMMARY = re.compile(r"^(\d+) schedules, (\d+) violations, (\d+) mismatches, .* ms/schedule, .*x")


def cloudy_sim(*flags: str, command: list[str] | None = None) -> tuple[int, str, str]:
    """Run ``cloudy sim FLAGS`` (or *command*); its exit status, stdout and stderr."""
    with ended_by_pid() as started:
        proc = subprocess.Popen(
            command or [*CLOUDY, "sim", *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(proc)
        try:
            out, err = proc.communicate(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):  # its workers, if any are left
                os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


def test_a_small_sweep_passes_and_sums_up_each_model() -> None:
    status, out, err = cloudy_sim("--seeds", "6", "--workers", "2")
    assert status == 0, out + err
    assert err == ""  # no progress bar when stderr is not a terminal
    lines = out.splitlines()
    for model in ("ring", "pipelined", "stream"):
        assert f"{model}: 2 schedules, 0 with violations" in lines
    found = SUMMARY.match(lines[-1])
    assert found is not None and found.groups() == ("6", "0", "0"), lines[-1]


def test_a_seed_replays_with_the_same_digest_also_by_its_replay_command() -> None:
    runs = [json.loads(cloudy_sim("--seed", "4", "--json")[1]) for _ in range(2)]
    assert runs[0]["digest"] == runs[1]["digest"] and len(runs[0]["digest"]) == 32
    one = runs[0]
    for field in ("ok", "runs", "violations", "mismatches", "failing", "by_model", "commit"):
        assert field in one
    assert (one["ok"], one["runs"], one["violations"], one["mismatches"]) == (True, 1, 0, 0)
    assert (one["seed"], one["nodes"], one["failing"]) == (4, 4, [])
    assert one["model"] == "ring"  # the 4th from --first 1, as the sweep runs it: discovered
    assert set(one["results"]) <= {"s1", "s2", "s3", "s4"}
    replay = shlex.split(one["replay"])
    assert replay[:2] == ["cloudy", "sim"] and "--discover" in replay
    status, out, err = cloudy_sim(command=[*CLOUDY, *replay[1:], "--json"])
    assert status == 0, err
    again = json.loads(out)
    assert (again["digest"], again["plan"]) == (one["digest"], one["plan"])
    assert "trace" in again and "printed" in again


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--seed", "1", "--faults", "crash:s2@soon"], "--faults: cannot read the fault"),
        (["--seed", "1", "--faults", "crash:s9@0.1"], "no node 's9' in a run of 4 slaves"),
        (["--faults", "none", "--no-faults"], "give one"),
        (["--seeds", "3", "--trace"], "give --seed S"),
        (["--seeds", "0"], "the number of seeds must be at least 1"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(flags: list[str], says: str) -> None:
    status, out, err = cloudy_sim(*flags)
    assert (status, out) == (2, "")
    assert len(err.splitlines()) == 1 and err.startswith("cloudy: ") and says in err, err


def test_the_trace_of_a_crash_shows_it_the_loss_and_the_replay() -> None:
    status, out, err = cloudy_sim(
        "--seed", "3", "--model", "ring", "--faults", "crash:s2@0.1", "--trace"
    )
    assert status == 0, out + err
    lines = out.splitlines()
    assert "plan: crash:s2@0.1" in lines
    assert any(re.fullmatch(r"\s+0\.100000 world\s+crash\s+s2", line) for line in lines), out
    assert any(re.match(r"\s+[\d.]+ s3\s+(INFO|WARNING) ", line) for line in lines)  # its log
    times = [float(line.split()[0]) for line in lines if re.match(r"\s+\d+\.\d{6} ", line)]
    assert times == sorted(times) and len(times) > 10
    assert "master: 3 slaves agree on <" in out and "; lost s2" in out
    assert "no violations" in lines and any(line.startswith("digest ") for line in lines)
    assert lines[-1].startswith(
        "replay: cloudy sim --model ring --nodes 4 --seed 3 --send-for 0.3 --wait-for 0.2 "
        "--faults 'crash:s2@0.1' --trace"
    )


def test_a_sweeps_json_says_runs_and_mismatches() -> None:
    status, out, _ = cloudy_sim(
        "--seeds", "3", "--first", "10", "--workers", "0", "--rerun-every", "1", "--json"
    )
    summary = json.loads(out)
    assert status == 0 and summary["ok"] is True
    assert (summary["runs"], summary["violations"], summary["mismatches"]) == (3, 0, 0)
    assert summary["by_model"] == {m: {"runs": 1, "violations": 0} for m in simulated.SIM_MODELS}
    assert summary["failing"] == summary["mismatched"] == []
    assert SUMMARY.match(summary["line"])


# --- what a failure looks like (in this process, the checks made to fail) ---------------


def test_failing_seeds_and_mismatches_are_said_with_their_replay_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runs: dict[int, int] = {}

    def broken(schedule: simulated.Schedule, **kwargs: Any) -> simulated.Outcome:
        out = simulated.Outcome(schedule, schedule.the_plan(), digest=f"d{schedule.seed}")
        runs[schedule.seed] = runs.get(schedule.seed, 0) + 1
        out.digest += "x" * (runs[schedule.seed] - 1)  # seed 1's re-run: another digest
        out.violations = ["the world ended"] if schedule.seed == 2 else []
        return out

    monkeypatch.setattr(sweep, "run_schedule", broken)
    argv = ["sim", "--seeds", "3", "--workers", "0", "--model", "ring", "--no-faults"]
    assert main(argv) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == [
        "FAIL seed 2 (ring, none):",
        "  the world ended",
        "  " + out[2].strip(),
    ]
    assert out[2].strip().startswith("replay: cloudy sim --model ring --nodes 4 --seed 2 ")
    assert out[3] == "MISMATCH seed 1 (ring): digest d1, then d1x"
    assert "ring: 3 schedules, 1 with violations" in out
    assert SUMMARY.match(out[-1]) and out[-1].startswith("3 schedules, 1 violations, 1 mism")

    monkeypatch.setattr("cloudy.cli.sim.run_schedule", broken)
    assert main(["sim", "--seed", "2", "--model", "ring", "--json"]) == 1
    one = json.loads(capsys.readouterr().out)
    assert one["ok"] is False and one["violations"] == 1
    assert one["failing"][0]["violations"] == ["the world ended"]
    assert one["failing"][0]["replay"] == one["replay"]
