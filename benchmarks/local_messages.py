"""1,000,000 small messages between two processes on one node, against a bare asyncio.Queue.

Run: ``.venv/bin/python benchmarks/local_messages.py [--count N] [--watched]``. The
last line prints both rates and their ratio (cloudy / queue); above 1 cloudy is
faster. ``--watched``: the node counts every process's messages, as once anyone asked
about them (``get_process_info``, ``cloudy ps``/``top``).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from _common import loop_name, run

from cloudy import (
    LocalNode,
    Message,
    ProcessId,
    expect,
    get_process_info,
    get_self_pid,
    send,
    spawn_local,
)


class Tick(Message):
    n: int


class Done(Message):
    count: int


async def counter(parent: ProcessId, count: int) -> None:
    seen = 0
    while seen < count:
        await expect(Tick)
        seen += 1
    send(parent, Done(seen))


async def cloudy_rate(count: int, watched: bool) -> float:
    async def main() -> float:
        me = get_self_pid()
        pid = spawn_local(counter, me, count)
        if watched:
            assert get_process_info(pid) is not None  # counting starts
        msg = Tick(1)
        start = time.perf_counter()
        for _ in range(count):
            send(pid, msg)
        done = await expect(Done)
        assert done.count == count
        return count / (time.perf_counter() - start)

    async with LocalNode("127.0.0.1", 0, logger=False) as node:
        rate: float = await node.run_process(main)
        return rate


async def queue_rate(count: int) -> float:
    queue: asyncio.Queue[Tick] = asyncio.Queue()
    done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def consumer() -> None:
        seen = 0
        while seen < count:
            await queue.get()
            seen += 1
        done.set_result(seen)

    task = asyncio.create_task(consumer())
    msg = Tick(1)
    start = time.perf_counter()
    for _ in range(count):
        queue.put_nowait(msg)
    assert await done == count
    elapsed = time.perf_counter() - start
    await task
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--watched", action="store_true", help="count every message")
    args = parser.parse_args()
    c = run(cloudy_rate(args.count, args.watched))
    q = run(queue_rate(args.count))
    print(
        f"local messages ({args.count:,}, {loop_name()}{', watched' * args.watched}): "
        f"cloudy {c / 1e6:.2f}M msg/s  "
        f"asyncio.Queue {q / 1e6:.2f}M msg/s  ratio {c / q:.2f}"
    )


if __name__ == "__main__":
    main()
