"""Spawn 100,000 processes that each wait in `expect`, then end them all.

Run: ``.venv/bin/python benchmarks/spawn.py [--count N]``. The last line prints
spawns per second (until every process is waiting) and memory per idle process
(the node's RSS growth divided by the count); Erlang's idle process takes ~2.7 KB.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time

from _common import loop_name, rss_bytes, run

from cloudy import LocalNode, Message, ProcessId, expect, get_self_pid, send, spawn_local


class Stop(Message):
    pass


class Stopped(Message):
    pass


async def idle(parent: ProcessId) -> None:
    await expect(Stop)
    send(parent, Stopped())


async def measure(count: int) -> tuple[float, float, float]:
    async def main() -> tuple[float, float, float]:
        gc.collect()
        before = rss_bytes()
        start = time.perf_counter()
        me = get_self_pid()
        pids: list[ProcessId] = [spawn_local(idle, me) for _ in range(count)]
        await asyncio.sleep(0)  # every process runs (in spawn order) up to its expect
        assert node.processes[pids[-1].lid].waiter is not None, "not all waiting yet"
        spawned = time.perf_counter() - start
        gc.collect()
        per_process = (rss_bytes() - before) / count
        start = time.perf_counter()
        stop = Stop()
        for pid in pids:
            send(pid, stop)
        for _ in range(count):
            await expect(Stopped)
        ended = time.perf_counter() - start
        return count / spawned, per_process, count / ended

    async with LocalNode("127.0.0.1", 0) as node:
        result: tuple[float, float, float] = await node.run_process(main)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    spawns, per_process, ends = run(measure(args.count))
    print(
        f"spawn ({args.count:,} idle processes, {loop_name()}): {spawns:,.0f} spawns/s  "
        f"{per_process / 1024:.2f} KB per idle process  {ends:,.0f} ends/s"
    )


if __name__ == "__main__":
    main()
