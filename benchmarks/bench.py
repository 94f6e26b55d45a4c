"""Every benchmark, short, in one sitting: one table of ratios (``make bench``).

Run: ``make bench`` (it installs Erlang when missing, as ``make bench-erlang`` does),
or ``.venv/bin/python benchmarks/bench.py``. A regression guard for contributors,
not the figures to quote: each benchmark runs once with a small count (about two
minutes in all on the 2-core test machine), against the reference it carries — a
bare asyncio task or queue, a bare asyncio + msgspec link, Erlang/OTP running the
same models — and its ratio is printed beside issue 24's target. A benchmark that
fails prints its error in the table and the rest go on.

The last line: every ratio, ``name=value``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

from _common import HERE, end_on_sigterm, run_group

TIMEOUT = 300


@dataclass(frozen=True)
class Row:
    name: str
    reference: str
    target: str
    value: str


def last_line(script: str, *args: str) -> str:
    out = run_group([sys.executable, os.path.join(HERE, script), *args], timeout=TIMEOUT)
    lines = out.strip().splitlines()
    if not lines:
        raise RuntimeError(f"{script} printed nothing")
    return lines[-1]


def find(pattern: str, line: str) -> str:
    m = re.search(pattern, line)
    if m is None:
        raise RuntimeError(f"no {pattern!r} in: {line}")
    return m.group(1)


def local_send() -> list[Row]:
    line = last_line("local_messages.py", "--count", "300000")
    ratio = find(r"ratio ([\d.]+)", line)
    return [Row("local send + receive", "asyncio.Queue", ">= 2x", f"{ratio}x")]


def spawn() -> list[Row]:
    line = last_line("spawn.py", "--count", "50000", "--rounds", "1")
    return [
        Row("spawn, 50k idle", "bare asyncio tasks", ">= 0.8", find(r"rate ([\d.]+)", line)),
        Row("memory per idle process", "a bare task", "< 1.5 KB", find(r"([\d.]+ KB) each", line)),
        Row("closing the node", "cancelling the tasks", "<= 1.5x", find(r"ending ([\d.]+x)", line)),
    ]


def link() -> list[Row]:
    ping = last_line("pingpong.py", "--count", "5000")
    stream = last_line("stream.py", "--count", "200000")
    floor = "bare asyncio + msgspec link"
    return [
        Row("remote ping-pong, median", floor, "<= 1.1x", find(r"ratio ([\d.]+)", ping) + "x"),
        Row("remote stream", floor, ">= 0.75", find(r"ratio ([\d.]+)", stream)),
    ]


def models() -> list[Row]:
    if shutil.which("erl") is None:
        why = "Erlang not installed (make bench installs it)"
        return [Row(m, "Erlang/OTP", "", why) for m in ("ring", "pipelined", "stream model")]
    line = last_line(
        "vs_erlang.py", "--rounds", "1", "--send-for", "2", "--only", "ring,pipelined,stream"
    )
    targets = {"ring": ">= 1.5x", "pipelined": ">= 7x", "stream": ">= 35x"}
    return [
        Row(
            f"{m} model, 4 slaves",
            "Erlang/OTP, same model",
            t,
            find(rf"{m} \(4 slaves\) ([\d.]+x)", line),
        )
        for m, t in targets.items()
    ]


def overload() -> list[Row]:
    line = last_line("overload.py", "--senders", "2", "--seconds", "2")
    lost = find(r"lost (\d+)", line)
    return [Row("2 senders flat out, 2 s", "", "0 lost", f"{lost} lost")]


def simulator() -> list[Row]:
    line = last_line("sim_schedules.py", "--seeds", "200")
    bad = find(r"(\d+ violations, \d+ mismatches)", line)
    return [Row("simulator, 200 seeds", "", "0 violations, 0 mismatches", bad)]


def main() -> int:
    end_on_sigterm()
    parts: list[Callable[[], list[Row]]] = [local_send, spawn, link, models, overload, simulator]
    rows: list[Row] = []
    for part in parts:
        try:
            got = part()
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            got = [Row(part.__name__, "", "", f"FAILED: {e}")]
        for row in got:
            print(f"{row.name}: {row.value}", flush=True)
        rows += got
    print()
    print(f"{'figure':30} {'against':30} {'target':28} now")
    for row in rows:
        print(f"{row.name:30} {row.reference:30} {row.target:28} {row.value}")
    print("bench: " + ", ".join(f"{r.name}={r.value}" for r in rows))
    return 1 if any(r.value.startswith("FAILED") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
