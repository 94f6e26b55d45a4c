"""Mailboxes on one node: limits, their policies, introspection, and what is logged.

(A long mailbox fed from another node, which stops that connection being read, is
tested with real nodes in test_overload.py.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from cloudy import (
    DiedException,
    LocalNode,
    Message,
    ProcessId,
    ProcessInfo,
    ProcessMonitorNotification,
    drain,
    expect,
    expect_timeout,
    get_process_info,
    get_self_pid,
    link,
    monitor,
    register,
    send,
    set_mailbox_limit,
    spawn_local,
)


class Item(Message):
    n: int


class Go(Message):
    pass


async def run(main: Callable[..., Any], **options: Any) -> Any:
    async with LocalNode("127.0.0.1", 0, cookie="test", **options) as node:
        return await asyncio.wait_for(node.run_process(main), 10)


async def test_a_limited_mailbox_drops_what_comes_over_it_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> list[int]:
        set_mailbox_limit(3)
        me = get_self_pid()
        for n in range(10):
            send(me, Item(n))
        got = []
        while (item := await expect_timeout(0, Item)) is not None:
            got.append(item.n)
        await drain()  # its next receive: the count of what was dropped is logged
        return got

    with caplog.at_level(logging.WARNING, logger="cloudy.mailbox"):
        assert await run(main) == [0, 1, 2]
    assert "mailbox full (3 messages): dropping what comes over it" in caplog.text
    assert "7 messages dropped over its mailbox limit" in caplog.text


async def test_the_first_messages_up_to_the_limit_are_kept_in_order() -> None:
    async def main() -> list[int]:
        set_mailbox_limit(3)
        me = get_self_pid()
        for n in range(5):
            send(me, Item(n))
        return [(await expect(Item)).n for _ in range(3)] + [
            -1 if await expect_timeout(0, Item) is None else -2
        ]

    assert await run(main) == [0, 1, 2, -1]


async def test_the_kill_policy_ends_the_process_with_that_reason() -> None:
    async def flooded() -> None:
        set_mailbox_limit(2, "kill")
        await expect(Go)

    async def main() -> ProcessMonitorNotification:
        pid = spawn_local(flooded)
        monitor(pid)
        await asyncio.sleep(0)  # it sets its limit
        for n in range(3):
            send(pid, Item(n))
        return await expect(ProcessMonitorNotification)

    note = await run(main)
    assert note.reason == DiedException("mailbox limit of 2 messages exceeded")


async def test_a_limit_of_none_lifts_it_and_a_bad_limit_is_refused() -> None:
    async def main() -> int:
        set_mailbox_limit(1)
        set_mailbox_limit(None)
        me = get_self_pid()
        for n in range(5):
            send(me, Item(n))
        with pytest.raises(ValueError, match="at least 1"):
            set_mailbox_limit(0)
        info = get_process_info(me)
        assert info is not None
        return info.mailbox_length

    assert await run(main) == 5


async def test_process_info_names_mailbox_monitors_and_links() -> None:
    async def idle() -> None:
        await expect(Go)

    async def watcher(target: ProcessId) -> None:
        monitor(target)
        await expect(Go)

    async def linker(target: ProcessId) -> None:
        link(target)
        await expect(Go)

    async def main() -> tuple[ProcessInfo | None, ProcessId, ProcessId, ProcessInfo | None]:
        pid = spawn_local(idle)
        register("idle-one", pid)
        w = spawn_local(watcher, pid)
        k = spawn_local(linker, pid)
        send(pid, Item(1))
        send(pid, Item(2))
        await asyncio.sleep(0.01)
        info = get_process_info(pid)
        send(pid, Go())
        await asyncio.sleep(0.01)
        return info, w, k, get_process_info(pid)

    info, w, k, after = await run(main)
    assert info is not None
    assert info.names == ["idle-one"] and info.mailbox_length == 2
    assert [p for p, _ in info.monitors] == [w] and info.links == [k]
    assert after is None  # it ended


async def test_a_long_mailbox_is_logged_once_per_crossing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        me = get_self_pid()
        for _ in range(2):
            for n in range(5):
                send(me, Item(n))
            for _ in range(5):
                await expect(Item)
            await drain()  # seen to: below half the threshold again, re-armed

    with caplog.at_level(logging.INFO, logger="cloudy.mailbox"):
        await run(main, mailbox_warn_at=3)
    assert caplog.text.count("has 3 messages waiting in its mailbox") == 2, caplog.text
    assert "is down to 0 messages waiting" in caplog.text
