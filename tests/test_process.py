"""Processes on one node: sending, receiving, spawning, logging, misuse."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest

import cloudy
from cloudy import (
    CloudyError,
    DiedException,
    DiedNormal,
    LocalNode,
    Message,
    NodeId,
    NotInProcessError,
    ProcessId,
    ProcessMonitorNotification,
    expect,
    expect_timeout,
    get_self_node,
    get_self_pid,
    match,
    match_any,
    match_if,
    monitor,
    receive_timeout,
    receive_wait,
    say,
    send,
    spawn_local,
    spawn_monitor,
)

# Every test is over in well under a second; a hang fails here instead of at pytest's timeout.
TEST_TIMEOUT = 10.0


async def run(main: Callable[..., Any], *args: Any) -> Any:
    """Run *main* as a process on a fresh node and return what it returns."""
    async with LocalNode("127.0.0.1", 0, cookie="test") as node:
        return await asyncio.wait_for(node.run_process(main, *args), TEST_TIMEOUT)


class Ping(Message):
    reply_to: ProcessId
    n: int = 0


class Pong(Message):
    n: int


class Other(Message):
    text: str


async def echo() -> None:
    """Answer every Ping with a Pong carrying the same number, until a Ping with n < 0."""
    while True:
        ping = await expect(Ping)
        if ping.n < 0:
            return
        send(ping.reply_to, Pong(ping.n))


async def wait_for_stop() -> None:
    await expect(str)


# ==================================================================================
# send / expect
# ==================================================================================


async def test_send_and_expect_between_two_processes() -> None:
    async def main() -> int:
        pid = spawn_local(echo)
        send(pid, Ping(get_self_pid(), 41))
        pong = await expect(Pong)
        send(pid, Ping(get_self_pid(), -1))
        return pong.n + 1

    assert await run(main) == 42


async def test_plain_data_is_a_message() -> None:
    async def main() -> list[Any]:
        me = get_self_pid()
        for value in (None, True, 7, 2.5, "text", b"bytes", (1, "a"), [1, 2], {"k": [1]}):
            send(me, value)
        got = [await expect(object) for _ in range(9)]
        return got

    assert await run(main) == [None, True, 7, 2.5, "text", b"bytes", (1, "a"), [1, 2], {"k": [1]}]


async def test_a_local_message_is_passed_without_copying() -> None:
    async def main() -> bool:
        shared = [1, 2, 3]
        send(get_self_pid(), shared)
        return await expect(list) is shared

    assert await run(main) is True


async def test_expect_skips_messages_of_other_types_and_leaves_them_in_order() -> None:
    async def main() -> tuple[Pong, list[Any]]:
        me = get_self_pid()
        send(me, "a")
        send(me, 1)
        send(me, Pong(5))
        send(me, "b")
        pong = await expect(Pong)
        rest = [await receive_wait(match_any(lambda m: m)) for _ in range(3)]
        return pong, rest

    assert await run(main) == (Pong(5), ["a", 1, "b"])


async def test_expect_waits_for_a_message_sent_later() -> None:
    async def replier(to: ProcessId) -> None:
        await expect(str)
        send(to, Pong(1))

    async def main() -> Pong:
        pid = spawn_local(replier, get_self_pid())
        send(pid, "go")
        return await expect(Pong)

    assert await run(main) == Pong(1)


async def test_messages_from_one_process_to_another_arrive_in_order() -> None:
    count = 10_000

    async def producer(to: ProcessId) -> None:
        for i in range(count):
            send(to, i)
            if i % 100 == 0:
                await asyncio.sleep(0)  # let the consumer run while we are still sending

    async def main() -> list[int]:
        spawn_local(producer, get_self_pid())
        return [await expect(int) for _ in range(count)]

    assert await run(main) == list(range(count))


async def test_a_long_stream_of_ready_messages_does_not_starve_other_processes() -> None:
    # A process served from a full mailbox never waits; it must still yield now and then.
    async def ticker(to: ProcessId) -> None:
        send(to, "tick")

    async def main() -> Any:
        me = get_self_pid()
        for i in range(10_000):
            send(me, i)
        spawn_local(ticker, me)
        for _ in range(10_000):
            await expect(int)
        # a poll never waits: the tick is there only if the loop above let the ticker run
        return await receive_timeout(0, match(str, lambda s: s))

    assert await run(main) == "tick"


async def test_send_to_a_process_that_has_ended_is_dropped_silently() -> None:
    async def quick() -> None:
        return None

    async def main() -> str:
        pid, ref = spawn_monitor(quick)
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref and note.reason == DiedNormal()
        send(pid, "into the void")
        send(ProcessId(get_self_node(), 10**9), "to no one")
        return "still here"

    assert await run(main) == "still here"


async def test_get_self_pid_and_node_print_like_cloud_haskell() -> None:
    async def main() -> tuple[ProcessId, NodeId]:
        return get_self_pid(), get_self_node()

    async with LocalNode("127.0.0.1", 0, cookie="test") as node:
        pid, nid = await asyncio.wait_for(node.run_process(main), TEST_TIMEOUT)
        assert nid == node.node_id == pid.node
        port = node.node_id.port
    assert port != 0
    assert str(nid) == f"nid://127.0.0.1:{port}:0"
    assert re.fullmatch(rf"pid://127\.0\.0\.1:{port}:0:\d+", str(pid))


# ==================================================================================
# receive_wait
# ==================================================================================


async def test_receive_wait_takes_the_first_message_any_clause_accepts() -> None:
    async def main() -> tuple[str, list[Any]]:
        me = get_self_pid()
        send(me, Other("skip me"))
        send(me, 3)
        send(me, Pong(1))
        got = await receive_wait(
            match(Pong, lambda p: f"pong {p.n}"),
            match_if(int, lambda n: n > 2, lambda n: f"big {n}"),
        )
        rest = [await receive_wait(match_any(lambda m: m)) for _ in range(2)]
        return got, rest

    # 3 arrived before Pong(1): arrival order wins over clause order
    assert await run(main) == ("big 3", [Other("skip me"), Pong(1)])


async def test_clauses_are_tried_in_order_for_one_message() -> None:
    async def main() -> str:
        send(get_self_pid(), 5)
        return await receive_wait(
            match_if(int, lambda n: n > 10, lambda n: "large"),
            match(int, lambda n: "any int"),
            match_any(lambda m: "anything"),
        )

    assert await run(main) == "any int"


async def test_match_if_leaves_messages_its_predicate_rejects() -> None:
    async def main() -> tuple[int, list[int]]:
        me = get_self_pid()
        for n in (1, 2, 3, 4):
            send(me, n)
        even = await receive_wait(match_if(int, lambda n: n % 2 == 0, lambda n: n))
        return even, [await expect(int) for _ in range(3)]

    assert await run(main) == (2, [1, 3, 4])


async def test_receive_wait_runs_async_handlers() -> None:
    async def handler(p: Pong) -> int:
        await asyncio.sleep(0)
        return p.n * 2

    async def main() -> int:
        send(get_self_pid(), Pong(21))
        return await receive_wait(match(Pong, handler))

    assert await run(main) == 42


async def test_receive_wait_waits_until_a_matching_message_arrives() -> None:
    async def sender(to: ProcessId) -> None:
        send(to, "not yet")
        send(to, Pong(7))

    async def main() -> tuple[int, str]:
        spawn_local(sender, get_self_pid())
        n = await receive_wait(match(Pong, lambda p: p.n))
        return n, await expect(str)

    assert await run(main) == (7, "not yet")


async def test_receive_wait_without_clauses_waits_until_an_exit_signal() -> None:
    # Cloud Haskell's `receiveWait []`: nothing is ever taken; only a signal ends it
    async def waiter() -> None:
        await receive_wait()

    async def main() -> tuple[Any, Any]:
        pid = spawn_local(waiter)
        monitor(pid)
        send(pid, Pong(1))
        early = await expect_timeout(0.05, ProcessMonitorNotification)
        cloudy.exit(pid, "enough")
        return early, await expect(ProcessMonitorNotification)

    early, note = await run(main)
    assert early is None
    assert isinstance(note.reason, DiedException) and "enough" in note.reason.message


async def test_receive_timeout_without_clauses_waits_and_gives_none() -> None:
    async def main() -> Any:
        send(get_self_pid(), Pong(1))
        nothing: Any = await receive_timeout(0.02)
        return nothing, await expect(Pong)

    assert await run(main) == (None, Pong(1))


# ==================================================================================
# receive_timeout / expect_timeout
# ==================================================================================


async def test_receive_timeout_zero_polls_and_leaves_the_mailbox_alone() -> None:
    async def main() -> tuple[Any, Any, list[Any]]:
        me = get_self_pid()
        empty = await receive_timeout(0, match_any(lambda m: m))
        send(me, "a")
        send(me, 1)
        no_match = await receive_timeout(0, match(Pong, lambda p: p))
        return empty, no_match, [await receive_wait(match_any(lambda m: m)) for _ in range(2)]

    assert await run(main) == (None, None, ["a", 1])


async def test_receive_timeout_zero_takes_a_matching_message_already_there() -> None:
    async def main() -> Any:
        send(get_self_pid(), "x")
        send(get_self_pid(), Pong(3))
        return await receive_timeout(0, match(Pong, lambda p: p.n))

    assert await run(main) == 3


async def test_receive_timeout_returns_none_on_expiry() -> None:
    async def main() -> tuple[Any, str]:
        send(get_self_pid(), "unrelated")
        got = await receive_timeout(0.05, match(Pong, lambda p: p))
        return got, await expect(str)

    assert await run(main) == (None, "unrelated")


async def test_receive_timeout_returns_a_message_arriving_before_the_deadline() -> None:
    async def sender(to: ProcessId) -> None:
        await expect(str)
        send(to, Pong(9))

    async def main() -> Any:
        pid = spawn_local(sender, get_self_pid())
        send(pid, "go")
        return await receive_timeout(5.0, match(Pong, lambda p: p.n))

    assert await run(main) == 9


async def test_expect_timeout_returns_the_message_or_none() -> None:
    async def main() -> tuple[Any, Any, Any]:
        send(get_self_pid(), Pong(1))
        first = await expect_timeout(1.0, Pong)
        second = await expect_timeout(0.02, Pong)
        polled = await expect_timeout(0, Pong)
        return first, second, polled

    assert await run(main) == (Pong(1), None, None)


# ==================================================================================
# Handlers and processes that raise
# ==================================================================================


async def test_run_process_reraises_the_process_exception() -> None:
    async def main() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        await run(main)


async def test_run_process_returns_the_result_of_a_plain_function() -> None:
    def main(a: int, b: int) -> int:
        return a + b

    assert await run(main, 2, 3) == 5


async def test_a_process_that_raises_ends_with_died_exception() -> None:
    async def crasher() -> None:
        await expect(str)
        raise ValueError("boom")

    async def main() -> ProcessMonitorNotification:
        pid, _ = spawn_monitor(crasher)
        send(pid, "go")
        return await expect(ProcessMonitorNotification)

    note = await run(main)
    assert isinstance(note.reason, DiedException)
    assert "ValueError" in note.reason.message and "boom" in note.reason.message


async def test_a_handler_that_raises_ends_the_process_with_died_exception() -> None:
    def bad_handler(p: Pong) -> None:
        raise RuntimeError(f"cannot handle {p.n}")

    async def worker() -> None:
        await receive_wait(match(Pong, bad_handler))

    async def main() -> tuple[ProcessMonitorNotification, ProcessId]:
        pid, _ = spawn_monitor(worker)
        send(pid, Pong(13))
        return await expect(ProcessMonitorNotification), pid

    note, pid = await run(main)
    assert note.pid == pid
    assert isinstance(note.reason, DiedException)
    assert "RuntimeError" in note.reason.message and "cannot handle 13" in note.reason.message


async def test_an_async_handler_that_raises_ends_the_process_too() -> None:
    async def bad_handler(m: Any) -> None:
        raise LookupError("async boom")

    async def worker() -> None:
        await receive_wait(match_any(bad_handler))

    async def main() -> ProcessMonitorNotification:
        pid = spawn_local(worker)
        monitor(pid)
        send(pid, 1)
        return await expect(ProcessMonitorNotification)

    note = await run(main)
    assert isinstance(note.reason, DiedException) and "async boom" in note.reason.message


async def test_a_predicate_that_raises_ends_the_process() -> None:
    async def worker() -> None:
        await receive_wait(match_if(int, lambda n: 1 // n > 0, lambda n: n))

    async def main() -> ProcessMonitorNotification:
        pid, _ = spawn_monitor(worker)
        send(pid, 0)
        return await expect(ProcessMonitorNotification)

    note = await run(main)
    assert isinstance(note.reason, DiedException)
    assert "ZeroDivisionError" in note.reason.message


async def test_a_spawned_process_that_returns_ends_with_died_normal() -> None:
    async def main() -> ProcessMonitorNotification:
        pid, ref = spawn_monitor(wait_for_stop)
        send(pid, "stop")
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref and note.pid == pid
        return note

    assert (await run(main)).reason == DiedNormal()


# ==================================================================================
# Spawning
# ==================================================================================


async def test_spawn_local_passes_arguments_and_returns_distinct_pids() -> None:
    async def adder(to: ProcessId, a: int, b: int) -> None:
        send(to, (get_self_pid(), a + b))

    async def main() -> tuple[set[ProcessId], set[int]]:
        me = get_self_pid()
        pids = {spawn_local(adder, me, i, 10) for i in range(5)}
        answers = [await expect(tuple) for _ in range(5)]
        assert {p for p, _ in answers} == pids
        return pids, {s for _, s in answers}

    pids, sums = await run(main)
    assert len(pids) == 5
    assert sums == {10, 11, 12, 13, 14}


async def test_fork_process_starts_a_process_from_outside() -> None:
    async with LocalNode("127.0.0.1", 0, cookie="test") as node:
        echo_pid = node.fork_process(echo)

        async def main() -> int:
            send(echo_pid, Ping(get_self_pid(), 8))
            n = (await expect(Pong)).n
            send(echo_pid, Ping(get_self_pid(), -1))
            return n

        assert await asyncio.wait_for(node.run_process(main), TEST_TIMEOUT) == 8


async def test_many_processes_in_a_chain() -> None:
    async def relay(n: int, to: ProcessId) -> None:
        if n == 0:
            send(to, "done")
            return
        spawn_local(relay, n - 1, to)

    async def main() -> str:
        spawn_local(relay, 500, get_self_pid())
        return await expect(str)

    assert await run(main) == "done"


# ==================================================================================
# Logging
# ==================================================================================


async def test_say_prints_timestamp_pid_and_text_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines: list[str] = []

    async def main() -> ProcessId:
        say("hello from a process")
        for _ in range(1000):
            err = capsys.readouterr().err
            lines.extend(err.splitlines())  # readouterr consumes what it returns
            if any("hello from a process" in line for line in lines):
                return get_self_pid()
            await asyncio.sleep(0)  # the logger is another process: let it run
        raise AssertionError("the logger never printed")

    pid = await run(main)
    line = next(line for line in lines if "hello from a process" in line)
    timestamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}"
    assert re.fullmatch(rf"{timestamp} {re.escape(str(pid))}: hello from a process", line)


async def test_say_without_a_logger_is_dropped() -> None:
    async with LocalNode("127.0.0.1", 0, cookie="test", logger=False) as node:

        async def main() -> str:
            say("nobody listens")
            return "fine"

        assert await asyncio.wait_for(node.run_process(main), TEST_TIMEOUT) == "fine"


# ==================================================================================
# Misuse
# ==================================================================================


def test_not_in_process_error_is_a_cloudy_error() -> None:
    assert issubclass(NotInProcessError, CloudyError)


@pytest.mark.parametrize(
    "call",
    [
        lambda: cloudy.get_self_pid(),
        lambda: cloudy.get_self_node(),
        lambda: cloudy.send(ProcessId(NodeId("127.0.0.1", 1), 1), "x"),
        lambda: cloudy.nsend("logger", "x"),
        lambda: cloudy.spawn_local(echo),
        lambda: cloudy.register("name", ProcessId(NodeId("127.0.0.1", 1), 1)),
        lambda: cloudy.whereis("logger"),
        lambda: cloudy.monitor(ProcessId(NodeId("127.0.0.1", 1), 1)),
        lambda: cloudy.link(ProcessId(NodeId("127.0.0.1", 1), 1)),
        lambda: cloudy.say("hello"),
        lambda: cloudy.new_chan(),
    ],
    ids=[
        "get_self_pid",
        "get_self_node",
        "send",
        "nsend",
        "spawn_local",
        "register",
        "whereis",
        "monitor",
        "link",
        "say",
        "new_chan",
    ],
)
def test_plain_api_calls_outside_a_process_raise_not_in_process_error(
    call: Callable[[], object],
) -> None:
    with pytest.raises(NotInProcessError, match="inside a cloudy process"):
        call()


async def test_waiting_api_calls_outside_a_process_raise_not_in_process_error() -> None:
    with pytest.raises(NotInProcessError):
        await expect(str)
    with pytest.raises(NotInProcessError):
        await receive_wait(match_any(lambda m: m))
    with pytest.raises(NotInProcessError):
        await receive_timeout(0, match_any(lambda m: m))
    with pytest.raises(NotInProcessError):
        await expect_timeout(0, str)


async def test_api_calls_inside_a_node_but_outside_a_process_still_raise() -> None:
    async with LocalNode("127.0.0.1", 0, cookie="test"):
        with pytest.raises(NotInProcessError):
            get_self_pid()
        with pytest.raises(NotInProcessError):
            await expect(str)
