"""Monitors, links, exit and kill: what others learn when a process ends, and how."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cloudy import (
    DiedException,
    DiedNormal,
    DiedUnknownId,
    LocalNode,
    MonitorRef,
    ProcessExitException,
    ProcessId,
    ProcessLinkException,
    ProcessMonitorNotification,
    catch_exit,
    exit,
    expect,
    expect_timeout,
    get_self_pid,
    kill,
    link,
    match,
    match_if,
    monitor,
    receive_timeout,
    receive_wait,
    send,
    spawn_link,
    spawn_local,
    spawn_monitor,
    unlink,
    unmonitor,
)

# Every test is over in well under a second; a hang fails here instead of at pytest's timeout.
TEST_TIMEOUT = 10.0


async def run(main: Callable[..., Any], *args: Any) -> Any:
    """Run *main* as a process on a fresh node and return what it returns."""
    async with LocalNode("127.0.0.1", 0, cookie="test") as node:
        return await asyncio.wait_for(node.run_process(main, *args), TEST_TIMEOUT)


async def wait_for_stop() -> None:
    """Idle until told "stop"; raise on "crash"."""
    if await expect(str) == "crash":
        raise RuntimeError("asked to crash")


async def sleeper() -> None:
    """Idle in a receive that nothing will ever satisfy."""
    await expect(bytes)


async def ready_then_sleep(report_to: ProcessId) -> None:
    """Tell *report_to* "ready" (sent as this process enters its wait), then idle."""
    send(report_to, "ready")
    await sleeper()


async def down(ref: MonitorRef) -> ProcessMonitorNotification:
    """The notification for the monitor *ref*, leaving every other message alone."""
    return await receive_wait(
        match_if(ProcessMonitorNotification, lambda n: n.ref == ref, lambda n: n)
    )


# ==================================================================================
# Monitors
# ==================================================================================


async def test_monitor_reports_died_normal_when_the_process_returns() -> None:
    async def main() -> tuple[ProcessMonitorNotification, Any, ProcessId]:
        pid = spawn_local(wait_for_stop)
        ref = monitor(pid)
        send(pid, "stop")
        note = await down(ref)
        return note, ref, pid

    note, ref, pid = await run(main)
    assert note == ProcessMonitorNotification(ref, pid, DiedNormal())


async def test_monitor_reports_died_exception_with_the_error_message() -> None:
    async def main() -> ProcessMonitorNotification:
        pid, ref = spawn_monitor(wait_for_stop)
        send(pid, "crash")
        return await down(ref)

    note = await run(main)
    assert note.reason == DiedException("RuntimeError: asked to crash")


async def test_monitoring_a_process_that_already_ended_reports_died_unknown_id() -> None:
    async def quick() -> None:
        return None

    async def main() -> tuple[ProcessMonitorNotification, Any, ProcessId]:
        pid, first = spawn_monitor(quick)
        await down(first)
        ref = monitor(pid)
        return await down(ref), ref, pid

    note, ref, pid = await run(main)
    assert note == ProcessMonitorNotification(ref, pid, DiedUnknownId())


async def test_monitoring_a_pid_that_never_existed_reports_died_unknown_id() -> None:
    async def main() -> ProcessMonitorNotification:
        ghost = ProcessId(get_self_pid().node, 10**9)
        return await down(monitor(ghost))

    assert (await run(main)).reason == DiedUnknownId()


async def test_every_monitor_of_a_process_is_told_once() -> None:
    async def watcher(target: ProcessId, report_to: ProcessId) -> None:
        ref = monitor(target)
        send(report_to, "watching")
        note = await down(ref)
        send(report_to, note.reason)
        extra = await receive_timeout(0.05, match(ProcessMonitorNotification, lambda n: n))
        send(report_to, ("extra", extra))

    async def main() -> list[Any]:
        me = get_self_pid()
        target = spawn_local(wait_for_stop)
        for _ in range(3):
            spawn_local(watcher, target, me)
        for _ in range(3):
            assert await expect(str) == "watching"
        # two monitors held by this process on the same target: two notifications
        r1, r2 = monitor(target), monitor(target)
        send(target, "crash")
        mine = [await down(r1), await down(r2)]
        assert {n.ref for n in mine} == {r1, r2}
        return [await expect(DiedException) for _ in range(3)] + [
            await expect(tuple) for _ in range(3)
        ]

    got = await run(main)
    assert got[:3] == [DiedException("RuntimeError: asked to crash")] * 3
    assert got[3:] == [("extra", None)] * 3


async def test_unmonitor_stops_the_notification() -> None:
    async def main() -> Any:
        pid = spawn_local(wait_for_stop)
        ref = monitor(pid)
        unmonitor(ref)
        kept = monitor(pid)  # a second monitor shows when the end has happened
        send(pid, "crash")
        await down(kept)
        return await receive_timeout(0, match(ProcessMonitorNotification, lambda n: n))

    assert await run(main) is None


async def test_spawn_monitor_watches_from_the_start() -> None:
    async def instant_crash() -> None:
        raise ValueError("at once")

    async def main() -> tuple[ProcessMonitorNotification, ProcessId, Any]:
        pid, ref = spawn_monitor(instant_crash)
        return await down(ref), pid, ref

    note, pid, ref = await run(main)
    assert note == ProcessMonitorNotification(ref, pid, DiedException("ValueError: at once"))


async def test_a_monitor_notification_waits_in_the_mailbox_behind_earlier_messages() -> None:
    async def sender_then_end(to: ProcessId) -> None:
        send(to, "last words")

    async def main() -> list[Any]:
        _, ref = spawn_monitor(sender_then_end, get_self_pid())
        await down(ref)
        return [await expect(str)]

    assert await run(main) == ["last words"]


# ==================================================================================
# Links
# ==================================================================================


async def test_link_raises_in_the_linker_when_the_linked_process_crashes() -> None:
    async def main() -> tuple[ProcessId, ProcessLinkException]:
        pid = spawn_local(wait_for_stop)
        link(pid)
        send(pid, "crash")
        try:
            await expect(bytes)  # never arrives: the link exception interrupts the wait
        except ProcessLinkException as e:
            return pid, e
        raise AssertionError("not interrupted")

    pid, e = await run(main)
    assert e.pid == pid
    assert e.reason == DiedException("RuntimeError: asked to crash")


async def test_link_does_not_fire_when_the_linked_process_ends_normally() -> None:
    async def main() -> Any:
        pid = spawn_local(wait_for_stop)
        link(pid)
        ref = monitor(pid)
        send(pid, "stop")
        note = await down(ref)
        assert note.reason == DiedNormal()
        # had the link fired, this wait would raise
        return await receive_timeout(0.05, match(bytes, lambda b: b))

    assert await run(main) is None


async def test_an_uncaught_link_exception_ends_the_linker_abnormally() -> None:
    async def linker(target: ProcessId, report_to: ProcessId) -> None:
        link(target)
        await ready_then_sleep(report_to)

    async def main() -> tuple[ProcessMonitorNotification, ProcessId]:
        target = spawn_local(wait_for_stop)
        _, ref = spawn_monitor(linker, target, get_self_pid())
        assert await expect(str) == "ready"
        send(target, "crash")
        return await down(ref), target

    note, target = await run(main)
    assert isinstance(note.reason, DiedException)
    assert "ProcessLinkException" in note.reason.message and str(target) in note.reason.message


async def test_spawn_link_links_from_the_start() -> None:
    async def crash_at_once() -> None:
        raise OSError("gone")

    async def main() -> ProcessLinkException:
        spawn_link(crash_at_once)
        try:
            await sleeper()
        except ProcessLinkException as e:
            return e
        raise AssertionError("not interrupted")

    e = await run(main)
    assert e.reason == DiedException("OSError: gone")


async def test_a_link_exception_interrupts_a_plain_asyncio_await_and_ends_the_process() -> None:
    async def linker(target: ProcessId, report_to: ProcessId) -> None:
        link(target)
        send(report_to, "ready")
        try:
            await asyncio.Event().wait()  # not a cloudy wait: the signal ends the process
        except ProcessLinkException:
            send(report_to, "caught")  # cannot happen: only cloudy's waits raise it

    async def main() -> ProcessMonitorNotification:
        target = spawn_local(wait_for_stop)
        _, ref = spawn_monitor(linker, target, get_self_pid())
        assert await expect(str) == "ready"
        send(target, "crash")
        return await down(ref)

    note = await run(main)
    assert isinstance(note.reason, DiedException)
    assert "ProcessLinkException" in note.reason.message


async def test_unlink_stops_the_link() -> None:
    async def main() -> Any:
        pid = spawn_local(wait_for_stop)
        link(pid)
        unlink(pid)
        ref = monitor(pid)
        send(pid, "crash")
        await down(ref)
        return await receive_timeout(0.05, match(bytes, lambda b: b))

    assert await run(main) is None


async def test_linking_to_a_dead_process_raises_died_unknown_id() -> None:
    async def quick() -> None:
        return None

    async def main() -> tuple[ProcessLinkException, ProcessId]:
        pid, ref = spawn_monitor(quick)
        await down(ref)
        link(pid)
        try:
            await sleeper()
        except ProcessLinkException as e:
            return e, pid
        raise AssertionError("not interrupted")

    e, pid = await run(main)
    assert e.pid == pid and e.reason == DiedUnknownId()


async def test_links_are_one_way() -> None:
    async def linker(target: ProcessId, report_to: ProcessId) -> None:
        link(target)
        send(report_to, "linked")
        raise RuntimeError("the linker fails")

    async def main() -> Any:
        target, ref = spawn_monitor(wait_for_stop)
        spawn_local(linker, target, get_self_pid())
        await expect(str)
        # the target lives on after its linker's crash: it still answers
        send(target, "stop")
        return (await down(ref)).reason

    assert await run(main) == DiedNormal()


# ==================================================================================
# exit and kill
# ==================================================================================


async def test_exit_raises_process_exit_exception_which_the_target_can_catch() -> None:
    async def survivor(report_to: ProcessId) -> None:
        try:
            await ready_then_sleep(report_to)
        except ProcessExitException as e:
            send(report_to, (e.sender, e.reason))
        send(report_to, "still alive")

    async def main() -> tuple[Any, Any, ProcessId]:
        pid = spawn_local(survivor, get_self_pid())
        assert await expect(str) == "ready"
        exit(pid, "please stop")
        return await expect(tuple), await expect(str), get_self_pid()

    (sender, reason), after, me = await run(main)
    assert sender == me and reason == "please stop" and after == "still alive"


async def test_two_exit_signals_in_a_row_are_both_raised() -> None:
    async def survivor(report_to: ProcessId) -> None:
        caught: list[Any] = []
        while len(caught) < 2:
            try:
                await ready_then_sleep(report_to)
            except ProcessExitException as e:
                caught.append(e.reason)
        send(report_to, caught)

    async def main() -> list[Any]:
        pid = spawn_local(survivor, get_self_pid())
        assert await expect(str) == "ready"
        exit(pid, "first")
        exit(pid, "second")
        return await expect(list)

    assert await run(main) == ["first", "second"]


async def test_a_task_group_still_reports_its_error_after_the_process_caught_exits() -> None:
    # Signals interrupt a process by cancelling its task; once taken they must leave
    # no cancellation behind, or asyncio.TaskGroup turns a child's error into a
    # CancelledError that silently ends the process.
    async def failing_child() -> None:
        raise ValueError("child failed")

    async def survivor(report_to: ProcessId) -> None:
        caught: list[Any] = []
        while len(caught) < 2:
            try:
                await ready_then_sleep(report_to)
            except ProcessExitException as e:
                caught.append(e.reason)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(failing_child())
                await sleeper()
        except* ValueError as group:
            send(report_to, ("task group raised", str(group.exceptions[0])))

    async def main() -> Any:
        pid = spawn_local(survivor, get_self_pid())
        assert await expect(str) == "ready"
        exit(pid, "first")
        exit(pid, "second")
        return await expect(tuple)

    assert await run(main) == ("task group raised", "child failed")


async def test_signals_taken_leave_no_cancellation_behind() -> None:
    # A signal interrupts a process by cancelling its task; once it has been raised
    # the task must not count as cancelled (asyncio.timeout and TaskGroup rely on it).
    async def survivor(report_to: ProcessId) -> None:
        caught: list[Any] = []
        while len(caught) < 3:
            try:
                await ready_then_sleep(report_to)
            except ProcessExitException as e:
                caught.append(e.reason)
        task = asyncio.current_task()
        assert task is not None
        send(report_to, (caught, task.cancelling()))

    async def main() -> Any:
        pid = spawn_local(survivor, get_self_pid())
        assert await expect(str) == "ready"
        for reason in ("first", "second", "third"):
            exit(pid, reason)
        return await expect(tuple)

    assert await run(main) == (["first", "second", "third"], 0)


async def test_catch_exit_returns_the_handler_result() -> None:
    async def guarded(report_to: ProcessId) -> None:
        async def handler(sender: ProcessId, reason: Any) -> str:
            return f"caught {reason}"

        result = await catch_exit(lambda: ready_then_sleep(report_to), handler)
        send(report_to, result)

    async def main() -> str:
        pid = spawn_local(guarded, get_self_pid())
        assert await expect(str) == "ready"
        exit(pid, "shutdown")
        return await expect(str)

    assert await run(main) == "caught shutdown"


async def test_catch_exit_with_a_plain_handler_and_no_exit_returns_the_action_result() -> None:
    async def main() -> tuple[str, int]:
        async def action() -> str:
            return "done"

        quiet = await catch_exit(action, lambda sender, reason: "unused")
        send(get_self_pid(), 5)

        async def wait_int() -> int:
            return await expect(int)

        return quiet, await catch_exit(wait_int, lambda sender, reason: -1)

    assert await run(main) == ("done", 5)


async def test_an_uncaught_exit_ends_the_process_with_died_exception() -> None:
    async def main() -> ProcessMonitorNotification:
        pid, ref = spawn_monitor(ready_then_sleep, get_self_pid())
        assert await expect(str) == "ready"
        exit(pid, "go away")
        return await down(ref)

    note = await run(main)
    assert isinstance(note.reason, DiedException)
    assert "ProcessExitException" in note.reason.message and "go away" in note.reason.message


async def test_exit_before_the_target_has_started_still_ends_it() -> None:
    async def main() -> ProcessMonitorNotification:
        pid, ref = spawn_monitor(sleeper)
        exit(pid, "too early")  # the target's task has not run yet
        return await down(ref)

    note = await run(main)
    assert isinstance(note.reason, DiedException) and "too early" in note.reason.message


async def test_kill_ends_a_process_even_if_it_catches_everything() -> None:
    async def stubborn(report_to: ProcessId) -> None:
        while True:
            try:
                await ready_then_sleep(report_to)
            except Exception as e:
                send(report_to, f"survived {type(e).__name__}")

    async def main() -> tuple[str, ProcessMonitorNotification, ProcessId]:
        me = get_self_pid()
        pid, ref = spawn_monitor(stubborn, me)
        assert await expect(str) == "ready"
        exit(pid, "polite")
        survived = await expect(str)
        assert await expect(str) == "ready"
        kill(pid, "no more")
        return survived, await down(ref), me

    survived, note, me = await run(main)
    assert survived == "survived ProcessExitException"
    assert isinstance(note.reason, DiedException)
    assert "no more" in note.reason.message and str(me) in note.reason.message


async def test_kill_is_not_caught_by_catch_exit() -> None:
    async def guarded(report_to: ProcessId) -> None:
        await catch_exit(lambda: ready_then_sleep(report_to), lambda sender, reason: None)

    async def main() -> ProcessMonitorNotification:
        pid, ref = spawn_monitor(guarded, get_self_pid())
        assert await expect(str) == "ready"
        kill(pid, "really")
        return await down(ref)

    note = await run(main)
    assert isinstance(note.reason, DiedException) and "really" in note.reason.message


async def test_kill_of_a_linked_process_raises_in_the_linker() -> None:
    async def main() -> tuple[ProcessLinkException, ProcessId]:
        pid = spawn_link(ready_then_sleep, get_self_pid())
        assert await expect(str) == "ready"
        kill(pid, "cut")
        try:
            await expect(bytes)
        except ProcessLinkException as e:
            return e, pid
        raise AssertionError("not interrupted")

    e, pid = await run(main)
    assert e.pid == pid
    assert isinstance(e.reason, DiedException) and "cut" in e.reason.message


async def test_exit_and_kill_of_a_dead_pid_do_nothing() -> None:
    async def quick() -> None:
        return None

    async def main() -> str:
        pid, ref = spawn_monitor(quick)
        await down(ref)
        exit(pid, "late")
        kill(pid, "later")
        return "fine"

    assert await run(main) == "fine"


async def test_a_process_can_exit_itself_and_catch_it() -> None:
    async def main() -> Any:
        exit(get_self_pid(), "self")
        try:
            await expect_timeout(5.0, bytes)
        except ProcessExitException as e:
            return e.reason
        return "not interrupted"

    assert await run(main) == "self"


async def test_run_process_of_a_killed_process_raises() -> None:
    async with LocalNode("127.0.0.1", 0, cookie="test") as node:

        async def killer(target_box: list[ProcessId]) -> None:
            kill(target_box[0], "by test")

        box: list[ProcessId] = []

        async def main() -> None:
            box.append(get_self_pid())
            node.fork_process(killer, box)
            await sleeper()

        with pytest.raises(ProcessExitException, match="by test"):
            await asyncio.wait_for(node.run_process(main), TEST_TIMEOUT)
