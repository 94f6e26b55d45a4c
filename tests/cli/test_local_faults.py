"""`cloudy local` with one fault injected (``--kill-master-at``, ``--kill-slave-at``,
``--freeze-slave-at``): what the slaves print still agrees. Each run has a discovery
port of its own; every process started with it is ended by its PID afterwards."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

import pytest
from procs import run_local

from cloudy.cli.faults import Fault, FaultInjector, parse_freeze, plan_faults
from cloudy.ring import expected_result

CLOUDY = [sys.executable, "-m", "cloudy"]
RUN = ["--slaves", "4", "--send-for", "2s", "--wait-for", "1s"]
RESULT = re.compile(r"^(nid://\S+) <(\d+), (\S+)>( \(finished without a master\))?$", re.M)


def results(stdout: str) -> dict[str, set[tuple[int, float, bool]]]:
    """Per slave node, the results it printed (count, sum, finished without a master)."""
    found: dict[str, set[tuple[int, float, bool]]] = {}
    for node, count, total, masterless in RESULT.findall(stdout):
        found.setdefault(node, set()).add((int(count), float(total), bool(masterless)))
    return found


@pytest.mark.load
def test_the_master_killed_every_slave_finishes_without_it_and_they_agree(
    local: tuple[list[str], str],
) -> None:
    done = run_local(*local, *RUN, "--with-seed", "11", "--kill-master-at", "1.0s")
    assert done.returncode == 0, done.stdout + done.stderr
    killed = r"^cloudy: fault: kill -9 master nid://\S+ \(pid \d+\) at 1\.\d s into SEND$"
    assert re.search(killed, done.stderr, re.M), done.stderr
    printed = results(done.stdout)
    assert len(printed) == 4, done.stdout
    ((count, total, masterless),) = set().union(*printed.values())
    assert masterless and count > 0
    assert total == expected_result(11, count).sum
    assert f"all 4 slaves that printed a result agree: <{count}, {total!r}>" in done.stdout


@pytest.mark.load
def test_a_slave_node_killed_is_restarted_by_its_heart_and_rejoins(
    local: tuple[list[str], str],
) -> None:
    done = run_local(*local, *RUN, "--with-seed", "12", "--kill-slave-at", "1.0s", "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    fault = re.search(r"^cloudy: fault: kill -9 slave (nid://\S+) \(pid (\d+)\)", done.stderr, re.M)
    assert fault is not None, done.stderr
    victim, pid = fault.groups()
    # the node was killed, not its heart: the heart says so and starts it again
    assert f"heart: slave {victim} exited with status -9 (signal 9, SIGKILL); restarting" in (
        done.stderr
    )
    started = re.findall(
        rf"^heart: started slave {re.escape(victim)}, pid (\d+)$", done.stderr, re.M
    )
    assert len(started) == 2 and started[0] == pid, done.stderr
    # the master's table: the victim's node came back and its new ring process
    # rejoined: all four agree, on a count past the moment of the kill
    assert not re.findall(r"^(nid://\S+)\s+lost\s", done.stdout, re.M), done.stdout
    agreed = re.search(r"^all 4 slaves agree: <(\d+), (\S+)>$", done.stdout, re.M)
    assert agreed is not None, done.stdout
    count, total = int(agreed[1]), float(agreed[2])
    assert total == expected_result(12, count).sum
    printed = results(done.stdout)
    assert victim in printed and len(printed) == 4
    assert set().union(*printed.values()) == {(count, total, False)}


@pytest.mark.load
def test_a_slave_node_frozen_for_a_while_the_run_still_agrees(
    local: tuple[list[str], str],
) -> None:
    done = run_local(*local, *RUN, "--with-seed", "13", "--freeze-slave-at", "0.5s:1s")
    assert done.returncode == 0, done.stdout + done.stderr
    frozen = r"^cloudy: fault: freeze \(SIGSTOP\) slave .* at 0\.\d s into SEND, for 1 s$"
    assert re.search(frozen, done.stderr, re.M), done.stderr
    assert "cloudy: fault: SIGCONT slave" in done.stderr
    printed = results(done.stdout)
    assert len(printed) == 4, done.stdout
    ((count, total, _),) = set().union(*printed.values())
    assert total == expected_result(13, count).sum
    assert f"all 4 slaves agree: <{count}, {total!r}>" in done.stdout


def test_fault_flags_are_read_and_checked() -> None:
    assert parse_freeze("1.0:3") == (1.0, 3.0)
    with pytest.raises(ValueError, match="T:D"):
        parse_freeze("1.0")
    faults = plan_faults(4, kill_master_at=2.0, freeze_slave_at=(0.5, 1.0), fault_slave=3)
    assert faults == [Fault("freeze", 0.5, 3, 1.0), Fault("kill", 2.0)]
    assert {f.slave for f in plan_faults(4, kill_slave_at=1.0)} <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match="slaves 0 to 3"):
        plan_faults(4, kill_slave_at=1.0, fault_slave=4)


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--freeze-slave-at", "1s"], "not a freeze"),
        (["--kill-slave-at", "-1s"], "not a duration"),
        (["--kill-slave-at", "1s", "--fault-slave", "4"], "slaves 0 to 3"),
    ],
)
def test_bad_fault_flags_give_one_line_and_exit_status_2(flags: list[str], says: str) -> None:
    done = subprocess.run(
        [*CLOUDY, "local", "--slaves", "4", *flags], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and says in done.stderr, done.stderr


def state_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def test_a_frozen_process_is_woken_when_the_injector_is_left_early() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    out = io.StringIO()
    try:
        faults = [Fault("freeze", 0.0, 0, 60.0), Fault("kill", 50.0, 0)]
        injector = FaultInjector(faults, lambda f: ("sleeper", sleeper.pid), 1.0, out)
        with injector:
            injector.start()
            deadline = time.monotonic() + 5
            while state_of(sleeper.pid) != "T" and time.monotonic() < deadline:
                time.sleep(0.01)
            assert state_of(sleeper.pid) == "T"
        assert state_of(sleeper.pid) != "T"  # woken on the way out
        assert sleeper.poll() is None  # and the kill, not yet due, was not carried out
        text = out.getvalue()
        assert "SIGCONT sleeper" in text and "kill -9 of slave 0 at 50 s not injected" in text
    finally:
        sleeper.kill()
        sleeper.wait()
