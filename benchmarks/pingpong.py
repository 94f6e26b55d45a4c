"""20,000 sequential round trips between processes on two nodes (two OS processes).

Run: ``.venv/bin/python benchmarks/pingpong.py [--count N] [--link tcp|unix]``
(cloudy's link: TCP by default, as the floor's; ``unix`` measures the Unix socket
that nodes on one machine use unless told otherwise). The same round trips
also go over the bare floor (`_floor.py`). The last line prints cloudy's and the
floor's median and p99 in µs and the ratio of the medians (cloudy / floor).
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
from _floor import FrameProtocol, serve

from cloudy import (
    LocalNode,
    Message,
    ProcessId,
    expect,
    get_self_pid,
    send,
)

COOKIE = "pingpong-benchmark"


class Ping(Message):
    reply_to: ProcessId
    n: int


class Pong(Message):
    n: int


async def ponger() -> None:
    while True:
        ping = await expect(Ping)
        send(ping.reply_to, Pong(ping.n))


async def serve_cloudy() -> None:
    await serve_node(COOKIE, "pong", ponger)


async def serve_floor() -> None:
    proto = FrameProtocol(lambda bodies: proto.write_bodies(bodies))
    await serve(proto)


async def both(cloudy_port: int, floor_port: int, count: int) -> tuple[list[float], list[float]]:
    """*count* round trips through cloudy, then *count* through the floor, in one loop.

    Both servers run throughout, so both are measured under the same conditions.
    (Alternating blocks of 1,000 instead makes the floor's median drop to about
    25 µs on the 2-core test machine while cloudy's stays put: how idle the CPUs
    are between round trips matters as much as the code; see the README.)
    """
    loop = asyncio.get_running_loop()
    waiter: list[asyncio.Future[list[bytes]]] = []
    proto = FrameProtocol(lambda bodies: waiter.pop().set_result(bodies))
    await loop.create_connection(lambda: proto, "127.0.0.1", floor_port)

    async def floor_block(first: int, n: int, rtts: list[float]) -> None:
        for i in range(first, first + n):
            start = time.perf_counter()
            fut = loop.create_future()
            waiter.append(fut)
            proto.write_bodies([str(i).encode()])
            (body,) = await fut
            rtts.append(time.perf_counter() - start)
            assert int(body) == i

    async def main() -> tuple[list[float], list[float]]:
        pong, me = await find_served(cloudy_port, "pong"), get_self_pid()
        cloudy: list[float] = []
        floor: list[float] = []
        for i in range(count):
            start = time.perf_counter()
            send(pong, Ping(me, i))
            got = await expect(Pong)
            cloudy.append(time.perf_counter() - start)
            assert got.n == i
        await floor_block(0, count, floor)
        return cloudy, floor

    async with LocalNode("127.0.0.1", 0, cookie=COOKIE, logger=False) as node:
        result: tuple[list[float], list[float]] = await node.run_process(main)
        return result


def summary(rtts: list[float]) -> tuple[float, float]:
    """Median and p99, in µs."""
    return statistics.median(rtts) * 1e6, statistics.quantiles(rtts, n=100)[98] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--serve", choices=["cloudy", "floor"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--link", choices=LINKS, default="tcp", help="cloudy's link (the floor's is TCP)"
    )
    args = parser.parse_args()
    use_link(args.link)
    if args.serve:
        run(serve_cloudy() if args.serve == "cloudy" else serve_floor())
        return
    cloudy_child, cloudy_port = start_child("pingpong.py", "--serve", "cloudy")
    try:
        floor_child, floor_port = start_child("pingpong.py", "--serve", "floor")
        try:
            cloudy, floor = run(both(int(cloudy_port), int(floor_port), args.count))
        finally:
            stop_child(floor_child)
    finally:
        stop_child(cloudy_child)
    (c_med, c_p99), (f_med, f_p99) = summary(cloudy), summary(floor)
    print(
        f"pingpong ({args.count:,} round trips, {loop_name()}): "
        f"cloudy over {args.link} median {c_med:.0f} µs p99 {c_p99:.0f} µs  "
        f"floor median {f_med:.0f} µs p99 {f_p99:.0f} µs  ratio {c_med / f_med:.2f}"
    )


if __name__ == "__main__":
    main()
