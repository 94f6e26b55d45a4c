"""The name registry and typed channels on one node."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cloudy import (
    LocalNode,
    Message,
    ProcessId,
    ProcessMonitorNotification,
    ProcessRegistrationException,
    ReceivePort,
    SendPort,
    expect,
    expect_timeout,
    get_self_pid,
    monitor,
    new_chan,
    nsend,
    receive_chan,
    register,
    reregister,
    send,
    send_chan,
    spawn_local,
    unregister,
    whereis,
)

TEST_TIMEOUT = 10.0


async def run(main: Callable[..., Any], *args: Any) -> Any:
    async with LocalNode("127.0.0.1", 0, cookie="test") as node:
        return await asyncio.wait_for(node.run_process(main, *args), TEST_TIMEOUT)


class Hello(Message):
    text: str


class Stop(Message):
    pass


async def echo_forever(parent: ProcessId) -> None:
    while True:
        msg = await expect(Hello)
        send(parent, Hello("echo " + msg.text))


async def wait_for_stop() -> None:
    await expect(Stop)


# --- registry -----------------------------------------------------------------------


async def test_register_whereis_and_nsend() -> None:
    async def main() -> tuple[ProcessId | None, str]:
        pid = spawn_local(echo_forever, get_self_pid())
        before = whereis("echo")
        register("echo", pid)
        nsend("echo", Hello("hi"))
        reply = await expect(Hello)
        return before, reply.text

    assert await run(main) == (None, "echo hi")


async def test_whereis_finds_the_registered_pid() -> None:
    async def main() -> bool:
        pid = spawn_local(wait_for_stop)
        register("worker", pid)
        found = whereis("worker")
        send(pid, Stop())
        return found == pid

    assert await run(main) is True


async def test_registering_a_taken_name_raises() -> None:
    async def main() -> str:
        register("taken", spawn_local(wait_for_stop))
        with pytest.raises(ProcessRegistrationException, match="taken"):
            register("taken", spawn_local(wait_for_stop))
        return "ok"

    assert await run(main) == "ok"


async def test_reregister_points_the_name_at_another_process() -> None:
    async def main() -> tuple[bool, bool]:
        first, second = spawn_local(wait_for_stop), spawn_local(wait_for_stop)
        register("svc", first)
        reregister("svc", second)
        return whereis("svc") == second, whereis("svc") != first

    assert await run(main) == (True, True)


async def test_reregister_and_unregister_of_an_unknown_name_raise() -> None:
    async def main() -> str:
        with pytest.raises(ProcessRegistrationException):
            reregister("nobody", get_self_pid())
        with pytest.raises(ProcessRegistrationException):
            unregister("nobody")
        return "ok"

    assert await run(main) == "ok"


async def test_unregister_frees_the_name() -> None:
    async def main() -> tuple[ProcessId | None, bool]:
        pid = spawn_local(wait_for_stop)
        register("tmp", pid)
        unregister("tmp")
        gone = whereis("tmp")
        register("tmp", get_self_pid())  # free again
        return gone, whereis("tmp") == get_self_pid()

    assert await run(main) == (None, True)


async def test_a_name_is_freed_when_its_process_ends() -> None:
    async def main() -> ProcessId | None:
        pid = spawn_local(wait_for_stop)
        register("short-lived", pid)
        ref = monitor(pid)
        send(pid, Stop())
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref
        return whereis("short-lived")

    assert await run(main) is None


async def test_registering_a_dead_process_raises() -> None:
    async def main() -> str:
        pid = spawn_local(wait_for_stop)
        monitor(pid)
        send(pid, Stop())
        await expect(ProcessMonitorNotification)
        with pytest.raises(ProcessRegistrationException, match="not alive"):
            register("ghost", pid)
        return "ok"

    assert await run(main) == "ok"


async def test_nsend_to_an_unknown_name_is_dropped() -> None:
    async def main() -> Hello | None:
        nsend("nobody-here", Hello("lost"))
        return await expect_timeout(0.05, Hello)

    assert await run(main) is None


# --- typed channels ---------------------------------------------------------------------


async def test_a_channel_carries_messages_in_order() -> None:
    async def main() -> list[int]:
        sp, rp = new_chan()
        for i in range(5):
            send_chan(sp, i)
        return [await receive_chan(rp) for _ in range(5)]

    assert await run(main) == [0, 1, 2, 3, 4]


class Request(Message):
    reply: SendPort
    n: int


async def doubler() -> None:
    while True:
        req = await expect(Request)
        send_chan(req.reply, req.n * 2)


async def test_a_send_port_passed_in_a_message_reaches_its_owner() -> None:
    async def main() -> list[int]:
        server = spawn_local(doubler)
        sp, rp = new_chan()
        for n in (1, 2, 3):
            send(server, Request(sp, n))
        return [await receive_chan(rp) for _ in range(3)]

    assert await run(main) == [2, 4, 6]


async def test_channel_messages_do_not_enter_the_mailbox() -> None:
    async def main() -> tuple[Any, int, Hello]:
        sp, rp = new_chan()
        send_chan(sp, Hello("on the channel"))
        in_mailbox = await expect_timeout(0.05, Hello)
        send(get_self_pid(), 7)
        return in_mailbox, await expect(int), await receive_chan(rp)

    assert await run(main) == (None, 7, Hello("on the channel"))


async def test_two_channels_are_independent() -> None:
    async def main() -> tuple[str, str]:
        sp1, rp1 = new_chan()
        sp2, rp2 = new_chan()
        send_chan(sp2, "second")
        send_chan(sp1, "first")
        return await receive_chan(rp1), await receive_chan(rp2)

    assert await run(main) == ("first", "second")


async def test_receive_chan_waits_for_a_later_message() -> None:
    async def sender(sp: SendPort) -> None:
        await asyncio.sleep(0.02)
        send_chan(sp, "late")

    async def main() -> str:
        sp, rp = new_chan()
        spawn_local(sender, sp)
        port: ReceivePort[str] = rp
        return await receive_chan(port)

    assert await run(main) == "late"


async def test_any_local_process_holding_the_receive_port_receives_from_it() -> None:
    async def reader(rp: ReceivePort[str], parent: ProcessId) -> None:
        send(parent, await receive_chan(rp))

    async def main() -> list[str]:
        sp, rp = new_chan()
        me = get_self_pid()
        spawn_local(reader, rp, me)
        spawn_local(reader, rp, me)
        await asyncio.sleep(0.01)  # both wait on it
        send_chan(sp, "a")
        send_chan(sp, "b")
        return sorted([await expect(str), await expect(str)])

    assert await run(main) == ["a", "b"]


async def test_send_chan_to_a_dead_owner_is_dropped() -> None:
    async def owner(parent: ProcessId) -> None:
        sp, _ = new_chan()
        send(parent, Request(sp, 0))

    async def main() -> str:
        pid = spawn_local(owner, get_self_pid())
        ref = monitor(pid)
        req = await expect(Request)
        note = await expect(ProcessMonitorNotification)
        assert note.ref == ref
        send_chan(req.reply, "nobody listens")  # no error
        return "ok"

    assert await run(main) == "ok"
