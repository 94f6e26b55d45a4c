"""Supervisors, as Erlang/OTP documents them: strategies, restart types, restart
intensity, shutdown, the run-time API, trees, and remote children on nodes in other
OS processes that are killed and come back."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import supervisor_funcs as sf

from cloudy import (
    DiedException,
    DiedNormal,
    LocalNode,
    Message,
    NodeId,
    ProcessExitException,
    ProcessId,
    ProcessLinkException,
    ProcessMonitorNotification,
    closure,
    exit,
    expect,
    expect_timeout,
    get_self_pid,
    kill,
    monitor,
    send,
    spawn_local,
)
from cloudy.supervisor import (
    MAX_INTENSITY_REASON,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    SupervisorError,
    count_children,
    delete_child,
    restart_child,
    start_child,
    start_supervisor,
    supervisor_child,
    terminate_child,
    which_children,
)
from cloudy.testing import NodeProcess

COOKIE = "supervisor-tests"
TEST_TIMEOUT = 10.0
WAIT = 5.0  # for anything due at once


async def run(main: Callable[..., Any], *args: Any, limit: float = TEST_TIMEOUT) -> Any:
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE) as node:
        return await asyncio.wait_for(node.run_process(main, *args), limit)


class Started(Message):
    name: str
    pid: ProcessId


async def worker(report_to: ProcessId, log: list[str], name: str) -> None:
    """Log "start"; report; then end as told: "crash" raises, "normal" returns. An exit
    signal is logged as "stop" (and ends it)."""
    log.append(f"start {name}")
    send(report_to, Started(name, get_self_pid()))
    try:
        command = await expect(str)
    except ProcessExitException:
        log.append(f"stop {name}")
        raise
    if command == "crash":
        raise RuntimeError(f"{name} asked to crash")


async def stubborn(report_to: ProcessId, log: list[str], name: str) -> None:
    """Catches every exit signal and goes on waiting: only `kill` ends it."""
    log.append(f"start {name}")
    send(report_to, Started(name, get_self_pid()))
    while True:
        try:
            await expect(bytes)
        except ProcessExitException:
            log.append(f"ignored exit {name}")


def spec(name: str, log: list[str], **options: Any) -> ChildSpec:
    return ChildSpec(name, worker, (get_self_pid(), log, name), **options)


async def started(*names: str) -> dict[str, ProcessId]:
    """Wait for a `Started` from each of *names*, in that order."""
    pids = {}
    for name in names:
        msg = await expect_timeout(WAIT, Started)
        assert msg is not None, f"{name} did not start"
        assert msg.name == name
        pids[name] = msg.pid
    return pids


async def none_started(seconds: float = 0.2) -> None:
    assert await expect_timeout(seconds, Started) is None


async def ended(pid: ProcessId) -> Any:
    ref = monitor(pid)
    note = await expect_timeout(WAIT, ProcessMonitorNotification)
    assert note is not None and note.ref == ref
    return note.reason


async def pids_of(sup: ProcessId) -> dict[str, ProcessId | None]:
    return {c.id: c.pid for c in await which_children(sup)}


# --- strategies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "after"),
    [
        ("one_for_one", ["start b"]),
        ("one_for_all", ["stop c", "stop a", "start a", "start b", "start c"]),
        ("rest_for_one", ["stop c", "start b", "start c"]),
    ],
)
async def test_a_crash_restarts_the_children_its_strategy_names(
    strategy: str, after: list[str]
) -> None:
    log: list[str] = []

    async def main() -> None:
        sup = await start_supervisor([spec(n, log) for n in "abc"], strategy)  # type: ignore[arg-type]
        pids = await started("a", "b", "c")
        assert log == ["start a", "start b", "start c"]
        send(pids["b"], "crash")
        restarted = [line.split()[1] for line in after if line.startswith("start")]
        new = await started(*restarted)
        await none_started()
        assert log[3:] == after
        now = await pids_of(sup)
        for name in "abc":
            assert (now[name] == new[name]) if name in new else (now[name] == pids[name])

    await run(main)


# --- restart types ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("restart", "how", "restarted"),
    [
        ("permanent", "normal", True),
        ("permanent", "crash", True),
        ("transient", "normal", False),
        ("transient", "shutdown", False),
        ("transient", "crash", True),
        ("temporary", "crash", False),
        ("temporary", "normal", False),
    ],
)
async def test_restart_types_decide_on_normal_and_abnormal_ends(
    restart: str, how: str, restarted: bool
) -> None:
    log: list[str] = []

    async def main() -> None:
        sup = await start_supervisor([spec("w", log, restart=restart)], intensity=5)
        pid = (await started("w"))["w"]
        if how == "shutdown":  # an exit "shutdown" from elsewhere is a clean end, as in OTP
            exit(pid, "shutdown")
        else:
            send(pid, how)
        if restarted:
            await started("w")
            assert (await pids_of(sup))["w"] not in (None, pid)
        else:
            await none_started()
            kept = await which_children(sup)
            assert kept == ([] if restart == "temporary" else [ChildInfo("w", None, restart)])

    await run(main)


# --- restart intensity --------------------------------------------------------------


async def test_more_restarts_than_the_intensity_stop_the_supervisor_and_its_children() -> None:
    log: list[str] = []

    async def main() -> Any:
        children = [spec(n, log) for n in "abc"]
        sup = await start_supervisor(children, intensity=2, period=5.0, link=False)
        ref = monitor(sup)
        pids = await started("a", "b", "c")
        for _ in range(2):  # R crashes: restarted
            send(pids["b"], "crash")
            pids |= await started("b")
        send(pids["b"], "crash")  # R + 1 within T
        note = await expect_timeout(WAIT, ProcessMonitorNotification)
        assert note is not None and note.ref == ref
        return note.reason

    reason = await run(main)
    assert isinstance(reason, DiedException)
    assert MAX_INTENSITY_REASON in reason.message
    assert log[-2:] == ["stop c", "stop a"]  # the others, in reverse start order


async def test_a_linked_caller_is_told_why_the_supervisor_gave_up() -> None:
    async def main() -> str:
        await start_supervisor([spec("w", [])], intensity=0)
        pid = (await started("w"))["w"]
        send(pid, "crash")
        try:
            await expect(bytes)
        except ProcessLinkException as e:
            return str(e.reason)
        raise AssertionError("not reached")

    assert MAX_INTENSITY_REASON in await run(main)


async def test_restarts_spread_over_more_than_the_period_are_tolerated() -> None:
    async def main() -> None:
        sup = await start_supervisor([spec("w", [])], intensity=1, period=0.3, link=False)
        pid = (await started("w"))["w"]
        for _ in range(3):
            send(pid, "crash")
            pid = (await started("w"))["w"]
            await asyncio.sleep(0.35)
        assert (await pids_of(sup))["w"] == pid

    await run(main)


# --- shutdown -----------------------------------------------------------------------


async def test_a_child_that_ignores_its_exit_is_killed_after_its_shutdown_time() -> None:
    log: list[str] = []

    async def main() -> tuple[float, Any]:
        me = get_self_pid()
        stub = ChildSpec("s", stubborn, (me, log, "s"), shutdown=0.3)
        sup = await start_supervisor([stub])
        pid = (await started("s"))["s"]
        ref = monitor(pid)
        t0 = time.monotonic()
        await terminate_child(sup, "s")
        took = time.monotonic() - t0
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref
        return took, note.reason

    took, reason = await run(main)
    assert 0.3 <= took < 2.0
    assert log == ["start s", "ignored exit s"]
    assert isinstance(reason, DiedException) and "killed" in reason.message


async def test_brutal_kill_kills_at_once() -> None:
    log: list[str] = []

    async def main() -> float:
        stub = ChildSpec("s", stubborn, (get_self_pid(), log, "s"), shutdown="brutal_kill")
        sup = await start_supervisor([stub])
        await started("s")
        t0 = time.monotonic()
        await terminate_child(sup, "s")
        return time.monotonic() - t0

    assert await run(main) < 0.2
    assert log == ["start s"]  # no exit signal was sent to ignore


async def test_an_exit_shutdown_stops_the_children_in_reverse_order_then_ends_normally() -> None:
    log: list[str] = []

    async def main() -> Any:
        sup = await start_supervisor([spec(n, log) for n in "abc"], link=False)
        await started("a", "b", "c")
        ref = monitor(sup)
        exit(sup, "shutdown")
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref
        return note.reason

    assert await run(main) == DiedNormal()
    assert log[3:] == ["stop c", "stop b", "stop a"]


async def test_the_supervisor_stops_when_the_process_that_started_it_ends() -> None:
    log: list[str] = []

    async def parent(report_to: ProcessId) -> None:
        sup = await start_supervisor([ChildSpec(n, worker, (report_to, log, n)) for n in "ab"])
        send(report_to, ("sup", sup))
        await expect(str)

    async def main() -> Any:
        p = spawn_local(parent, get_self_pid())
        await started("a", "b")
        sup = (await expect(tuple))[1]
        ref = monitor(sup)
        send(p, "go")
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref
        return note.reason

    assert await run(main) == DiedNormal()
    assert log[2:] == ["stop b", "stop a"]


async def test_a_killed_supervisor_takes_its_local_children_with_it() -> None:
    async def main() -> None:
        sup = await start_supervisor([spec("w", [])], link=False)
        pid = (await started("w"))["w"]
        kill(sup, "test")
        assert isinstance(await ended(pid), DiedException)

    await run(main)


# --- the run-time API ---------------------------------------------------------------


async def test_run_time_api_and_its_errors() -> None:
    log: list[str] = []

    async def main() -> None:
        sup = await start_supervisor([spec("a", log)])
        await started("a")
        b = await start_child(sup, spec("b", log, restart="transient"))
        assert (await started("b"))["b"] == b
        with pytest.raises(SupervisorError, match="already exists"):
            await start_child(sup, spec("b", log))
        inner = supervisor_child("inner", [])
        await start_child(sup, inner)
        assert await count_children(sup) == ChildCounts(3, 3, 1, 2)
        infos = await which_children(sup)
        assert [(c.id, c.restart, c.kind) for c in infos] == [
            ("a", "permanent", "worker"),
            ("b", "transient", "worker"),
            ("inner", "permanent", "supervisor"),
        ]
        for call in (restart_child, delete_child):
            with pytest.raises(SupervisorError, match="running"):
                await call(sup, "b")
        await terminate_child(sup, "b")
        assert log[-1] == "stop b"
        assert (await pids_of(sup))["b"] is None
        assert await count_children(sup) == ChildCounts(3, 2, 1, 2)
        b2 = await restart_child(sup, "b")
        assert (await started("b"))["b"] == b2 != b
        await terminate_child(sup, "b")
        await delete_child(sup, "b")
        assert [c.id for c in await which_children(sup)] == ["a", "inner"]
        for call in (terminate_child, restart_child, delete_child):
            with pytest.raises(SupervisorError, match="no child 'b'"):
                await call(sup, "b")
        temp = await start_child(sup, spec("t", log, restart="temporary"))
        await started("t")
        ref = monitor(temp)
        await terminate_child(sup, "t")  # a temporary child's spec goes with it
        assert "t" not in await pids_of(sup)
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref and isinstance(note.reason, DiedException)

    await run(main)


async def test_bad_arguments_and_children_that_cannot_start_are_errors() -> None:
    log: list[str] = []

    async def main() -> None:
        with pytest.raises(SupervisorError, match="duplicate child id"):
            await start_supervisor([spec("a", log), spec("a", log)])
        with pytest.raises(SupervisorError, match="strategy"):
            await start_supervisor([], "one_for_none")  # type: ignore[arg-type]
        with pytest.raises(SupervisorError, match="needs a node"):
            ChildSpec("r", closure(sf.remote_worker, get_self_pid(), "r"))
        nowhere = NodeId("127.0.0.1", 1)
        remote = ChildSpec("r", closure(sf.remote_worker, get_self_pid(), "r"), node=nowhere)
        with pytest.raises(SupervisorError, match="failed to start child 'r'"):
            await start_supervisor([spec("a", log), remote])
        assert log == ["start a", "stop a"]  # the ones started are stopped again
        sup = await start_supervisor([], link=False)
        with pytest.raises(SupervisorError, match="could not be started"):
            await start_child(sup, remote)
        assert await which_children(sup) == []
        kill(sup, "test")
        await ended(sup)
        with pytest.raises(SupervisorError, match="not running"):
            await which_children(sup)

    await run(main)


# --- trees --------------------------------------------------------------------------


async def test_an_inner_supervisor_that_gives_up_is_restarted_as_a_unit() -> None:
    log: list[str] = []

    async def main() -> None:
        inner = supervisor_child("inner", [spec("x", log), spec("y", log)], intensity=0)
        sup = await start_supervisor([spec("a", log), inner, spec("b", log)])
        pids = await started("a", "x", "y", "b")
        inner_pid = (await pids_of(sup))["inner"]
        send(pids["x"], "crash")  # over the inner's intensity: it stops y and ends
        await started("x", "y")  # the outer one restarts it, and so its children
        assert log[4:] == ["stop y", "start x", "start y"]
        assert (await pids_of(sup))["inner"] not in (None, inner_pid)
        exit(sup, "shutdown")  # the whole tree stops, depth first, in reverse order
        await ended(sup)
        assert log[7:] == ["stop b", "stop y", "stop x", "stop a"]

    async def guarded() -> None:
        try:
            await main()
        except ProcessLinkException as e:
            raise AssertionError(f"the supervisor died: {e}") from e

    await run(guarded)


# --- remote children ----------------------------------------------------------------


def kill9(node: NodeProcess) -> None:
    node.signal(signal.SIGKILL)
    assert node.proc is not None
    node.proc.wait(5)


async def test_a_remote_child_is_restarted_on_its_node_once_that_is_back() -> None:
    first = NodeProcess("supervisor_funcs", cookie=COOKIE)
    again = NodeProcess("supervisor_funcs", cookie=COOKIE, port=first.port)

    async def main() -> None:
        me = get_self_pid()
        clo = closure(sf.remote_worker, me, "r")
        sup = await start_supervisor([ChildSpec("r", clo, node=first.node_id)], link=False)
        one = await expect_timeout(WAIT, sf.RemoteStarted)
        assert one is not None and one.node == first.node_id
        await asyncio.to_thread(kill9, first)
        await asyncio.sleep(1.0)  # a few failed attempts: they do not count as crashes
        await asyncio.to_thread(again.__enter__)
        two = await expect_timeout(WAIT, sf.RemoteStarted)
        assert two is not None and two.node == first.node_id
        assert (await pids_of(sup))["r"] == two.pid
        exit(sup, "shutdown")
        await ended(sup)

    try:
        with first:
            await run(main, limit=30)
    finally:
        again.stop()


async def test_a_remote_child_moves_to_the_next_node_when_its_node_is_lost() -> None:
    with (
        NodeProcess("supervisor_funcs", cookie=COOKIE) as a,
        NodeProcess("supervisor_funcs", cookie=COOKIE) as b,
    ):

        async def main() -> None:
            clo = closure(sf.remote_worker, get_self_pid(), "r")
            sup = await start_supervisor([ChildSpec("r", clo, node=[a.node_id, b.node_id])])
            one = await expect_timeout(WAIT, sf.RemoteStarted)
            assert one is not None and one.node == a.node_id
            await asyncio.to_thread(kill9, a)
            two = await expect_timeout(WAIT, sf.RemoteStarted)
            assert two is not None and two.node == b.node_id
            assert (await pids_of(sup))["r"] == two.pid
            await terminate_child(sup, "r")
            assert await ended(two.pid) != DiedNormal()

        await run(main, limit=30)
