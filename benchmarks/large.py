"""A large message to a node in another OS process, and round trips beside it.

Run: ``.venv/bin/python benchmarks/large.py [--mib 256] [--link tcp|unix]``. The
child node's ``sink`` answers a `Big` with its length and a `Ping` with a `Pong`.
First 200 idle round trips (the reference, same sitting); then one process sends a
message of *mib* MiB (over the 64 MiB frame limit: it travels in parts) while
another keeps one round trip in flight at a time until the big one's answer is back.

The last line: the time for the big message to arrive (its answer back), in MB/s;
the idle round trip's median; the round trips' median and worst while the big one
was in flight, and how much later than idle the worst one was.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from _common import (
    LINKS,
    find_served,
    loop_name,
    run,
    serve_node,
    start_child,
    stop_child,
    use_link,
)

from cloudy import (
    LocalNode,
    Message,
    ProcessId,
    expect,
    get_self_pid,
    send,
    spawn_local,
)

COOKIE = "large-message-benchmark"


class Big(Message):
    reply_to: ProcessId
    payload: bytes


class Got(Message):
    length: int


class Ping(Message):
    reply_to: ProcessId


class Pong(Message):
    pass


class Done(Message):
    rtts: list[float]


async def sink() -> None:
    while True:
        msg = await expect(Message)
        if isinstance(msg, Big):
            send(msg.reply_to, Got(len(msg.payload)))
        elif isinstance(msg, Ping):
            send(msg.reply_to, Pong())


async def pinger(target: ProcessId, parent: ProcessId, stop_at: list[bool]) -> None:
    me, rtts = get_self_pid(), []
    while not stop_at:
        start = time.perf_counter()
        send(target, Ping(me))
        await expect(Pong)
        rtts.append(time.perf_counter() - start)
    send(parent, Done(rtts))


async def measure(port: int, mib: int) -> tuple[float, list[float], list[float]]:
    async def main() -> tuple[float, list[float], list[float]]:
        target, me = await find_served(port, "sink"), get_self_pid()
        idle = []
        for _ in range(200):
            start = time.perf_counter()
            send(target, Ping(me))
            await expect(Pong)
            idle.append(time.perf_counter() - start)
        payload = bytes(range(256)) * (mib * 4096)
        stop: list[bool] = []
        spawn_local(pinger, target, me, stop)
        await asyncio.sleep(0.01)  # the pinger is under way
        start = time.perf_counter()
        send(target, Big(me, payload))
        got = await expect(Got)
        took = time.perf_counter() - start
        stop.append(True)
        done = await expect(Done)
        assert got.length == len(payload), (got.length, len(payload))
        return took, idle, done.rtts

    async with LocalNode("127.0.0.1", 0, cookie=COOKIE, logger=False) as node:
        result: tuple[float, list[float], list[float]] = await node.run_process(main)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--link", choices=LINKS, default="tcp")
    args = parser.parse_args()
    use_link(args.link)
    if args.serve:
        run(serve_node(COOKIE, "sink", sink))
        return
    child, port = start_child("large.py", "--serve")
    try:
        took, idle, busy = run(measure(int(port), args.mib))
    finally:
        stop_child(child)
    idle_ms = statistics.median(idle) * 1e3
    worst = max(busy) * 1e3
    print(
        f"large ({args.mib} MiB over {args.link}, {loop_name()}): arrived in {took:.2f} s "
        f"({args.mib * 1.048576 / took:.0f} MB/s); round trip idle median {idle_ms:.2f} ms, "
        f"while it was in flight median {statistics.median(busy) * 1e3:.2f} ms, worst "
        f"{worst:.1f} ms ({len(busy)} round trips): {worst - idle_ms:.1f} ms behind it"
    )


if __name__ == "__main__":
    main()
