"""Spawn 100,000 processes that each wait in `expect`, then close their node; against
bare asyncio tasks that each await a Future, then are cancelled — in one sitting.

Run: ``.venv/bin/python benchmarks/spawn.py [--count N] [--rounds R]``. Each round
runs cloudy, then the bare tasks, each in a fresh Python process (so that each one's
RSS growth is its own), R times (3). Measured in each: spawns per second until every
one waits (the last one's first await reached), memory per idle one (RSS growth over
the count), and how long ending them all takes (cloudy: closing the node, which kills
every process and waits for each to end; bare: cancelling every task and gathering
them). ``--only cloudy`` or ``--only bare`` runs one measurement here and prints it.

The last line: the medians, and cloudy's as a share of the bare tasks' (spawn rate:
cloudy / bare; memory and ending: cloudy's cost over bare's).
"""

from __future__ import annotations

import asyncio
import gc
import re
import statistics
import subprocess
import sys
import time

from _common import Parser, loop_name, rss_bytes, run, whole
from _messages import Stop

from cloudy import LocalNode, expect, spawn_local

LINE = re.compile(r"([\d,]+) spawns/s +([\d.]+) KB each +([\d.]+) s to end")


async def idle() -> None:
    await expect(Stop)


async def cloudy(count: int) -> tuple[float, float, float]:
    node = LocalNode("127.0.0.1", 0)
    await node.start()

    async def spawn_all() -> tuple[float, float]:
        gc.collect()
        before = rss_bytes()
        start = time.perf_counter()
        pids = [spawn_local(idle) for _ in range(count)]
        await asyncio.sleep(0)  # every process runs (in spawn order) up to its expect
        assert node.processes[pids[-1].lid].waiter is not None, "not all waiting yet"
        spawned = time.perf_counter() - start
        gc.collect()
        return count / spawned, (rss_bytes() - before) / count

    rate, per_process = await node.run_process(spawn_all)
    start = time.perf_counter()
    await node.close()
    return rate, per_process, time.perf_counter() - start


async def bare(count: int) -> tuple[float, float, float]:
    loop = asyncio.get_running_loop()

    async def wait(fut: asyncio.Future[None]) -> None:
        await fut

    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    futures = [loop.create_future() for _ in range(count)]
    tasks = [loop.create_task(wait(f)) for f in futures]
    await asyncio.sleep(0)  # every task runs up to its await
    spawned = time.perf_counter() - start
    gc.collect()
    per_task = (rss_bytes() - before) / count
    start = time.perf_counter()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return count / spawned, per_task, time.perf_counter() - start


def one(which: str, count: int) -> str:
    rate, per_one, ended = run((cloudy if which == "cloudy" else bare)(count))
    return (
        f"{which} ({count:,} idle, {loop_name()}): {rate:,.0f} spawns/s  "
        f"{per_one / 1024:.2f} KB each  {ended:.2f} s to end"
    )


def measured(which: str, count: int) -> tuple[float, float, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--only", which, "--count", str(count)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    m = LINE.search(done.stdout)
    if m is None:
        raise RuntimeError(f"spawn.py --only {which} said: {done.stdout}{done.stderr}")
    return float(m.group(1).replace(",", "")), float(m.group(2)), float(m.group(3))


def main() -> None:
    parser = Parser(description=__doc__)
    parser.add_argument("--count", type=whole(1), default=100_000)
    parser.add_argument("--rounds", type=whole(1), default=3)
    parser.add_argument("--only", choices=["cloudy", "bare"])
    args = parser.parse_args()
    if args.only:
        print(one(args.only, args.count))
        return
    runs: dict[str, list[tuple[float, float, float]]] = {"cloudy": [], "bare": []}
    for _ in range(args.rounds):
        for which in runs:
            runs[which].append(measured(which, args.count))
            print(which, runs[which][-1], flush=True)
    (c_rate, c_kb, c_end), (b_rate, b_kb, b_end) = (
        tuple(statistics.median(x) for x in zip(*runs[w], strict=True)) for w in runs
    )
    print(
        f"spawn ({args.count:,} idle, {loop_name()}): cloudy {c_rate:,.0f} spawns/s, "
        f"{c_kb:.2f} KB each, {c_end:.2f} s to close the node; bare tasks {b_rate:,.0f}/s, "
        f"{b_kb:.2f} KB, {b_end:.2f} s to cancel; cloudy/bare: rate {c_rate / b_rate:.2f}, "
        f"memory {c_kb / b_kb:.2f}x, ending {c_end / b_end:.2f}x"
    )


if __name__ == "__main__":
    main()
