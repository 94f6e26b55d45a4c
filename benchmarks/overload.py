"""N sender nodes flat out to one receiver for 10 s: nothing may be lost.

Run: ``.venv/bin/python benchmarks/overload.py [--senders 1,2,4,8] [--seconds 10]``.
For each N a fresh receiver node and N sender nodes run in their own OS processes
on 127.0.0.1. Each sender sends numbered messages to the receiver's ``sink`` as
fast as it can (with an await point every few thousand: `drain` where it exists,
so that backpressure can suspend it), then says how many it sent. The sink checks
each sender's order and counts what arrived. A row per N: received rate, messages
lost (must be 0), out-of-order arrivals, connections the receiver declared lost,
the receiver's and the senders' peak RSS, and the receiver's longest loop stall.
The last line is the row of the largest N.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from _common import HERE, find_served, loop_name, run, start_child, stop_child

import cloudy
from cloudy import (
    LocalNode,
    Message,
    ProcessId,
    expect_timeout,
    get_self_pid,
    receive_all,
    send,
)

COOKIE = "overload-benchmark"
BATCH = 2048
# After the last sender is done, how long the sink waits for stragglers.
SETTLE = 20.0


class Sample(Message):
    sender: int
    seq: int


class Done(Message):
    sender: int
    sent: int


class Query(Message):
    reply_to: ProcessId


class Stats(Message):
    dones: int
    received: int
    lost: int
    disorder: int
    declared_lost: int
    peak_rss_mb: float
    longest_stall_s: float
    seconds: float


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _LossCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "declaring it lost" in record.getMessage():
            self.count += 1


# --- the receiver ---------------------------------------------------------------------


async def serve_receiver() -> None:
    losses = _LossCounter()
    logging.getLogger("cloudy").addHandler(losses)
    stall = [0.0]

    async def watch_loop() -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            stall[0] = max(stall[0], loop.time() - before - 0.01)

    async def sink() -> None:
        next_seq: dict[int, int] = {}
        sent: dict[int, int] = {}
        received = disorder = 0
        first = last_done = 0.0
        while True:
            for msg in await receive_all():
                if type(msg) is Sample:
                    if not received:
                        first = time.monotonic()
                    received += 1
                    if msg.seq != next_seq.get(msg.sender, 0):
                        disorder += 1
                    next_seq[msg.sender] = msg.seq + 1
                elif type(msg) is Done:
                    sent[msg.sender] = msg.sent
                    last_done = time.monotonic()
                elif type(msg) is Query:
                    stats = Stats(
                        len(sent),
                        received,
                        sum(sent.values()) - received,
                        disorder,
                        losses.count,
                        peak_rss_mb(),
                        stall[0],
                        last_done - first,
                    )
                    send(msg.reply_to, stats)

    watcher = asyncio.ensure_future(watch_loop())
    async with LocalNode("127.0.0.1", 0, cookie=COOKIE, logger=False) as node:
        node.register("sink", node.fork_process(sink))
        print("ready", node.node_id.port, flush=True)
        await asyncio.Event().wait()
    watcher.cancel()


# --- a sender -------------------------------------------------------------------------


async def serve_sender(port: int, me: int, seconds: float) -> None:
    pause = getattr(cloudy, "drain", None)

    async def main() -> int:
        sink = await find_served(port, "sink")
        print("ready", flush=True)
        deadline = time.monotonic() + seconds
        seq = 0
        while time.monotonic() < deadline:
            for _ in range(BATCH):
                send(sink, Sample(me, seq))
                seq += 1
            if pause is not None:
                await pause()
            else:
                await asyncio.sleep(0)
        send(sink, Done(me, seq))
        if pause is not None:
            await pause()
        return seq

    async with LocalNode("127.0.0.1", 0, cookie=COOKIE, logger=False) as node:
        sent: int = await node.run_process(main)
        await asyncio.sleep(1.0)  # let the buffers drain before the node closes
    print(f"sent {sent} {peak_rss_mb():.1f}", flush=True)


# --- the parent -----------------------------------------------------------------------


async def one_row(port: int, n: int, seconds: float) -> tuple[Stats, list[float]]:
    """Start *n* senders against the receiver on *port*; its stats and their peak RSS."""
    senders: list[asyncio.subprocess.Process] = []

    async def main() -> Stats:
        sink = await find_served(port, "sink")
        for k in range(n):
            senders.append(
                await asyncio.create_subprocess_exec(
                    *(sys.executable, "overload.py", "--serve", "sender"),
                    *(str(port), str(k), str(seconds)),
                    stdout=asyncio.subprocess.PIPE,
                    cwd=HERE,
                )
            )
        # poll until every sender is done and everything it sent has arrived, or until
        # SETTLE seconds after the senders' deadline: what has not arrived by then is lost
        give_up = time.monotonic() + seconds + SETTLE
        while True:
            await asyncio.sleep(0.5)
            send(sink, Query(get_self_pid()))
            stats = await expect_timeout(10.0, Stats)
            if stats is None:
                raise TimeoutError("the receiver does not answer")
            if (stats.dones == n and stats.lost <= 0) or time.monotonic() > give_up:
                return stats

    try:
        async with LocalNode("127.0.0.1", 0, cookie=COOKIE, logger=False) as node:
            stats: Stats = await node.run_process(main)
        rss = []
        for child in senders:
            out, _ = await asyncio.wait_for(child.communicate(), 30)
            words = out.decode().split()
            rss.append(float(words[-1]) if words[-3:-2] == ["sent"] else float("nan"))
        return stats, rss
    finally:
        for child in senders:
            if child.returncode is None:
                child.kill()
                await child.wait()


def row(n: int, seconds: float) -> str:
    receiver, port = start_child("overload.py", "--serve", "receiver")
    try:
        stats, sender_rss = run(one_row(int(port), n, seconds))
    finally:
        stop_child(receiver)
    return (
        f"{n} senders: received {stats.received / max(stats.seconds, 1e-9) / 1e3:,.0f}k msg/s "
        f"lost {stats.lost} done {stats.dones}/{n} out-of-order {stats.disorder} "
        f"declared-lost {stats.declared_lost} receiver-rss {stats.peak_rss_mb:.0f} MB "
        f"sender-rss {max(sender_rss):.0f} MB longest-stall {stats.longest_stall_s:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--senders", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve", choices=["receiver", "sender"], help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "receiver":
        run(serve_receiver())
        return
    if args.serve == "sender":
        port, me, seconds = args.args
        run(serve_sender(int(port), int(me), float(seconds)))
        return
    rows = [row(int(n), args.seconds) for n in args.senders.split(",")]
    for line in rows[:-1]:
        print(line, flush=True)
    print(f"overload ({loop_name()}, {args.seconds:g} s): {rows[-1]}")


if __name__ == "__main__":
    main()
