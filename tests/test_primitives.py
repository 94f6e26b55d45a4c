"""Cloud Haskell's primitives that end the caller (`die`, `terminate`), wait on a
channel with a timeout (`receive_chan_timeout`), and ask another node for a name and
await the answer (`whereis_remote`, the peer in its own OS process)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cloudy import (
    DiedException,
    LocalNode,
    NodeId,
    ProcessMonitorNotification,
    ProcessTerminationException,
    expect,
    monitor,
    new_chan,
    receive_chan_timeout,
    send_chan,
    spawn_local,
    terminate,
    whereis_remote,
)
from cloudy import die as die_now
from cloudy.aio import free_port
from cloudy.testing import NodeProcess

COOKIE = "test-primitives"


async def run(main: Callable[..., Any], *args: Any) -> Any:
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE) as node:
        return await asyncio.wait_for(node.run_process(main, *args), 30)


async def ended_with(body: Callable[[], Any]) -> Any:
    """The reason a process running *body* ends with, as its monitor sees it."""

    async def watch() -> Any:
        ref = monitor(spawn_local(body))
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref
        return note.reason

    return await run(watch)


async def test_die_ends_the_caller_with_its_reason() -> None:
    async def body() -> None:
        die_now("out of coffee")

    reason = await ended_with(body)
    assert isinstance(reason, DiedException)
    assert "out of coffee" in reason.message


async def test_terminate_ends_the_caller_abnormally_unless_it_catches_it() -> None:
    async def body() -> None:
        terminate()

    reason = await ended_with(body)
    assert isinstance(reason, DiedException)
    assert "ProcessTerminationException" in reason.message

    async def survivor() -> str:
        try:
            terminate()
        except ProcessTerminationException:
            return "caught"

    assert await run(survivor) == "caught"


async def test_receive_chan_timeout_gives_what_is_there_or_none_in_time() -> None:
    async def main() -> tuple[Any, Any, Any, float]:
        sp, rp = new_chan()
        send_chan(sp, "first")
        now = await receive_chan_timeout(rp, 0)  # already there: no wait at all
        started = time.monotonic()
        nothing = await receive_chan_timeout(rp, 0.2)
        waited = time.monotonic() - started

        async def later() -> None:
            await asyncio.sleep(0.05)
            send_chan(sp, "second")

        spawn_local(later)
        arrived = await receive_chan_timeout(rp, 5)
        return now, nothing, arrived, waited

    now, nothing, arrived, waited = await run(main)
    assert (now, nothing, arrived) == ("first", None, "second")
    assert waited >= 0.19


@pytest.fixture(scope="module")
def peer() -> Iterator[NodeProcess]:
    with NodeProcess("remote_funcs", cookie=COOKIE) as node:
        yield node


async def test_whereis_remote_answers_across_os_processes(peer: NodeProcess) -> None:
    async def main() -> tuple[Any, Any]:
        return await whereis_remote(peer.node_id, "echo"), await whereis_remote(
            peer.node_id, "nobody"
        )

    found, missing = await run(main)
    assert found is not None and found.node == peer.node_id
    assert missing is None


async def test_whereis_remote_of_a_node_that_is_not_there_raises_in_time() -> None:
    nowhere = NodeId("127.0.0.1", free_port())

    async def main() -> None:
        await whereis_remote(nowhere, "echo", seconds=1.0)

    with pytest.raises(TimeoutError, match="did not say who 'echo' is"):
        await run(main)
