"""Stream 500,000 small messages to a process on a node in another OS process.

Run: ``.venv/bin/python benchmarks/stream.py [--count N] [--link tcp|unix]``
(cloudy's link: TCP by default, as the floor's; ``unix``: the Unix socket nodes on
one machine use unless told otherwise). The same traffic also
goes over the bare floor (`_floor.py`: one asyncio connection, length-prefixed
msgspec frames, coalesced writes). The last line prints both rates and the ratio
cloudy / floor; Erlang's distribution reaches about 0.12 of the floor here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import msgspec
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
from _floor import FrameProtocol, decoder, encoder, serve

import cloudy
from cloudy import (
    LocalNode,
    Message,
    ProcessId,
    expect,
    get_self_pid,
    send,
)

COOKIE = "stream-benchmark"
BATCH = 4096


class Sample(Message):
    i: int
    x: float


class Start(Message):
    reply_to: ProcessId
    count: int


class Got(Message):
    count: int


class Plain(msgspec.Struct, array_like=True):
    i: int
    x: float


# --- the child -------------------------------------------------------------------------


async def sink() -> None:
    start = await expect(Start)
    seen = 0
    while seen < start.count:
        await expect(Sample)
        seen += 1
    send(start.reply_to, Got(seen))


async def serve_cloudy() -> None:
    await serve_node(COOKIE, "sink", sink)


async def serve_floor() -> None:
    dec = decoder(Plain)
    state = {"want": -1, "seen": 0}

    def on_bodies(bodies: list[bytes]) -> None:
        if state["want"] < 0:
            state["want"] = int(bodies[0])
            bodies = bodies[1:]
        for body in bodies:
            dec.decode(body)
        state["seen"] += len(bodies)
        if state["seen"] >= state["want"]:
            proto.write_bodies([str(state["seen"]).encode()])

    proto = FrameProtocol(on_bodies)
    await serve(proto)


# --- the parent ------------------------------------------------------------------------


# the await point of a process that only sends: `drain` (backpressure) where it exists
pause = getattr(cloudy, "drain", None) or (lambda: asyncio.sleep(0))


async def cloudy_rate(port: int, count: int) -> float:
    async def main() -> float:
        sink_pid = await find_served(port, "sink")
        send(sink_pid, Start(get_self_pid(), count))
        start = time.perf_counter()
        for i in range(count):
            send(sink_pid, Sample(i, 0.5))
            if i % BATCH == 0:
                await pause()  # let the node write while we go on
        got = await expect(Got)
        assert got.count == count
        return count / (time.perf_counter() - start)

    async with LocalNode("127.0.0.1", 0, cookie=COOKIE, logger=False) as node:
        rate: float = await node.run_process(main)
        return rate


async def floor_rate(port: int, count: int) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    proto = FrameProtocol(lambda bodies: done.set_result(int(bodies[0])))
    await loop.create_connection(lambda: proto, "127.0.0.1", port)
    enc = encoder()
    proto.write_bodies([str(count).encode()])
    start = time.perf_counter()
    for first in range(0, count, BATCH):
        proto.write_bodies(
            [enc.encode(Plain(i, 0.5)) for i in range(first, min(first + BATCH, count))]
        )
        await asyncio.sleep(0)
    assert await done == count
    return count / (time.perf_counter() - start)


def measure(kind: str, count: int) -> float:
    child, port = start_child("stream.py", "--serve", kind)
    try:
        return run((cloudy_rate if kind == "cloudy" else floor_rate)(int(port), count))
    finally:
        stop_child(child)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500_000)
    parser.add_argument("--serve", choices=["cloudy", "floor"], help=argparse.SUPPRESS)
    parser.add_argument(
        "--link", choices=LINKS, default="tcp", help="cloudy's link (the floor's is TCP)"
    )
    args = parser.parse_args()
    use_link(args.link)
    if args.serve:
        run(serve_cloudy() if args.serve == "cloudy" else serve_floor())
        return
    c = measure("cloudy", args.count)
    f = measure("floor", args.count)
    print(
        f"stream ({args.count:,} messages, {loop_name()}): "
        f"cloudy over {args.link} {c / 1e6:.2f}M msg/s  "
        f"floor {f / 1e6:.2f}M msg/s  ratio {c / f:.2f}",
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
