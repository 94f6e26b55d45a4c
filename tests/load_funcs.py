"""A sink and a flooding sender, run by the load and fault tests on nodes in other OS
processes (imported by name, ``load_funcs``, on both sides so the tags agree)."""

from __future__ import annotations

import time

from cloudy import (
    Message,
    NodeMonitorNotification,
    ProcessId,
    ProcessInfo,
    drain,
    expect,
    expect_timeout,
    get_process_info,
    monitor_node,
    receive_all,
    reconnect,
    remotable,
    send,
    usend,
)


class Sample(Message):
    sender: int
    seq: int


class Done(Message):
    sender: int
    sent: int


class Query(Message):
    reply_to: ProcessId


class Stats(Message):
    """What the sink saw: per sender, how many arrived, the last seq, and the first hole
    (expected seq, seq that came instead) if any; what each sender said it sent."""

    received: dict[int, int]
    last: dict[int, int]
    holes: dict[int, tuple[int, int]]
    done: dict[int, int]


class Go(Message):
    pass


@remotable
async def lazy_sink() -> None:
    """A `sink` that reads nothing until it is told to `Go`."""
    await expect(Go)
    await sink()


@remotable
async def info(pid: ProcessId) -> ProcessInfo | None:
    return get_process_info(pid)


@remotable
async def sink() -> None:
    """Count what arrives from each sender; answer every `Query` with `Stats`."""
    received: dict[int, int] = {}
    last: dict[int, int] = {}
    holes: dict[int, tuple[int, int]] = {}
    done: dict[int, int] = {}
    while True:
        for msg in await receive_all():
            if type(msg) is Sample:
                k = msg.sender
                expected = last.get(k, -1) + 1
                if msg.seq != expected and k not in holes:
                    holes[k] = (expected, msg.seq)
                last[k] = msg.seq
                received[k] = received.get(k, 0) + 1
            elif type(msg) is Done:
                done[msg.sender] = msg.sent
            elif type(msg) is Query:
                send(msg.reply_to, Stats(received, last, holes, done))


@remotable
async def flood(to: ProcessId, me: int, seconds: float, how: str) -> int:
    """Send numbered `Sample`s to *to* flat out for *seconds*, then `Done`; the count.

    *how*: ``send``, ``usend``, or ``reconnect`` (send, and reconnect whenever the
    connection to *to*'s node is lost).
    """
    put = usend if how == "usend" else send
    monitor_node(to.node)
    deadline = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < deadline:
        for _ in range(1024):
            put(to, Sample(me, seq))
            seq += 1
        await drain()
        if how == "reconnect" and await expect_timeout(0, NodeMonitorNotification) is not None:
            reconnect(to)
            monitor_node(to.node)
    put(to, Done(me, seq))
    await drain()
    return seq


__all__ = ["Done", "Go", "Query", "Sample", "Stats", "flood", "info", "lazy_sink", "sink"]
