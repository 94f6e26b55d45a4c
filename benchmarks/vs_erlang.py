"""cloudy against Erlang/OTP in one sitting: the experiment's three models and spawn.

Run: ``make bench-erlang`` (installs Erlang from the distribution's packages when it is
missing), or ``.venv/bin/python benchmarks/vs_erlang.py [--rounds 3] [--slaves 4]
[--only ring,pipelined,stream,spawn]``.

Each figure is run as A B A B ...: cloudy, then Erlang, *rounds* times, and the
medians compared. cloudy's side is ``cloudy local --json`` (the slaves and the master
each an OS process) and ``benchmarks/spawn.py --only cloudy``; Erlang's is
``benchmarks/erlang/cloudy_ring.erl`` — the same models with the same delivery
guarantees (see its header), a master node and one `peer` node per slave, each an
OS process, distributed Erlang over TCP on 127.0.0.1 — and its ``spawn_main``.
Erlang runs with a private epmd (on a free port, ended by its PID) and a private
cookie; every process started is ended by its process group, whatever happens.

The last line: each figure's ratio cloudy / Erlang (above 1: cloudy is ahead; for
memory, Erlang's bytes per idle process over cloudy's).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from _common import HERE, Parser, end_group, end_on_sigterm, run_group, whole

from cloudy.testing import free_port

MODELS = {"ring": "1", "pipelined": "4", "stream": "65536"}  # the model's K or W
TIMEOUT = 120.0  # seconds for any one run


@dataclass
class Figure:
    """One figure's runs: cloudy's and Erlang's values (higher is better)."""

    name: str
    unit: str
    cloudy: list[float] = field(default_factory=list)
    erlang: list[float] = field(default_factory=list)

    def ratio(self) -> float:
        return statistics.median(self.cloudy) / statistics.median(self.erlang)


class Erlang:
    """The compiled Erlang side, its own epmd and cookie."""

    def __init__(self, work: str) -> None:
        for tool in ("erl", "erlc", "epmd"):
            if shutil.which(tool) is None:
                raise SystemExit(f"vs_erlang.py: {tool} not found (make bench-erlang installs it)")
        source = os.path.join(HERE, "erlang", "cloudy_ring.erl")
        subprocess.run(["erlc", "-o", work, source], check=True)
        self.work = work
        self.port = free_port()
        self.env = dict(os.environ, ERL_EPMD_PORT=str(self.port))
        self.cookie = f"vs-erlang-{secrets.token_hex(8)}"
        self.epmd = subprocess.Popen(
            ["epmd", "-address", "127.0.0.1", "-port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # (it complains of each node's probe of it)
            start_new_session=True,
        )

    def close(self) -> None:
        end_group(self.epmd)

    def erl(self, call: str, distributed: bool = True) -> str:
        command = ["erl", "-noshell", "-pa", self.work, "-start_epmd", "false"]
        if distributed:
            name = f"cloudy_master_{os.getpid()}@127.0.0.1"
            command += ["-name", name, "-setcookie", self.cookie]
            command += ["-kernel", "prevent_overlapping_partitions", "false"]
            command += ["-kernel", "inet_dist_use_interface", "{127,0,0,1}"]  # loopback only
        # (cwd: where Erlang writes its crash dumps)
        return run_group([*command, "-eval", call], timeout=TIMEOUT, env=self.env, cwd=self.work)

    def model(self, model: str, slaves: int, send_for: float) -> float:
        call = (
            f'cloudy_ring:main(["{model}", "{slaves}", "{MODELS[model]}", "{send_for:.1f}", "1.0"])'
        )
        line = self.erl(call).strip().splitlines()[-1]
        m = re.search(r"msgs/s=([\d.]+) agree=(\w+)", line)
        if m is None or m.group(2) != "true":
            raise RuntimeError(f"Erlang's {model} did not agree: {line}")
        return float(m.group(1))

    def spawn(self, count: int) -> tuple[float, float]:
        line = self.erl(f'cloudy_ring:spawn_main(["{count}"])', distributed=False)
        m = re.search(r"(\d+) spawns/s, (\d+) bytes each \(RSS\)", line)
        if m is None:
            raise RuntimeError(f"Erlang's spawn said: {line}")
        return float(m.group(1)), float(m.group(2))


def cloudy_model(model: str, slaves: int, send_for: float) -> float:
    extra = {"pipelined": ["--tokens", "4"], "stream": ["--window", "65536"]}.get(model, [])
    out = run_group(
        [
            *(sys.executable, "-m", "cloudy", "local", "--json", "--slaves", str(slaves)),
            *("--send-for", f"{send_for}s", "--wait-for", "1s", "--model", model, *extra),
        ],
        timeout=TIMEOUT,
    )
    report = json.loads(out)
    if not report["agree"]:
        raise RuntimeError(f"cloudy's {model} did not agree")
    rate: float = report["msgs_per_s"]
    return rate


def cloudy_spawn(count: int) -> tuple[float, float]:
    spawn = os.path.join(HERE, "spawn.py")
    out = run_group(
        [sys.executable, spawn, "--only", "cloudy", "--count", str(count)], timeout=TIMEOUT
    )
    m = re.search(r"([\d,]+) spawns/s\s+([\d.]+) KB each", out)
    if m is None:
        raise RuntimeError(f"spawn.py said: {out}")
    return float(m.group(1).replace(",", "")), float(m.group(2)) * 1024


def rounded(values: list[float]) -> list[int]:
    return [round(v) for v in values]


def bytes_each(inverses: list[float]) -> list[int]:
    return [round(1 / v) for v in inverses]


@contextlib.contextmanager
def erlang_side() -> Iterator[Erlang]:
    with tempfile.TemporaryDirectory(prefix="vs-erlang-") as work:
        erlang = Erlang(work)
        try:
            yield erlang
        finally:
            erlang.close()


def main() -> int:
    end_on_sigterm()
    parser = Parser(description=__doc__)
    parser.add_argument("--rounds", type=whole(1), default=3, help="A B pairs per figure (3)")
    parser.add_argument("--slaves", type=whole(2), default=4, help="slaves (4)")
    parser.add_argument("--send-for", type=float, default=2.0, help="seconds (2)")
    parser.add_argument("--spawns", type=whole(1), default=100_000, help="processes (100000)")
    parser.add_argument("--only", default="ring,pipelined,stream,spawn", help="figures")
    args = parser.parse_args()
    wanted = args.only.split(",")
    figures: list[Figure] = []
    with erlang_side() as erlang:
        for model in [m for m in MODELS if m in wanted]:
            fig = Figure(f"{model} ({args.slaves} slaves)", "agreed msgs/s")
            for _ in range(args.rounds):
                fig.cloudy.append(cloudy_model(model, args.slaves, args.send_for))
                fig.erlang.append(erlang.model(model, args.slaves, args.send_for))
            figures.append(fig)
            print(
                f"{fig.name}: cloudy {rounded(fig.cloudy)} erlang {rounded(fig.erlang)}", flush=True
            )
        if "spawn" in wanted:
            rate = Figure(f"spawn ({args.spawns:,} idle)", "spawns/s")
            memory = Figure("memory per idle process", "bytes, Erlang's / cloudy's")
            for _ in range(args.rounds):
                (c_rate, c_bytes), (e_rate, e_bytes) = (
                    cloudy_spawn(args.spawns),
                    erlang.spawn(args.spawns),
                )
                rate.cloudy.append(c_rate)
                rate.erlang.append(e_rate)
                memory.cloudy.append(1 / c_bytes)  # (higher is better: fewer bytes)
                memory.erlang.append(1 / e_bytes)
            figures += [rate, memory]
            print(
                f"spawn: cloudy {rounded(rate.cloudy)} /s, {bytes_each(memory.cloudy)} B; "
                f"erlang {rounded(rate.erlang)} /s, {bytes_each(memory.erlang)} B",
                flush=True,
            )
    print()
    print(f"{'figure':32} {'cloudy':>14} {'Erlang':>14} {'ratio':>7}")
    for fig in figures:
        c, e = statistics.median(fig.cloudy), statistics.median(fig.erlang)
        if fig.name.startswith("memory"):
            c, e = 1 / c, 1 / e
        print(f"{fig.name:32} {c:14,.0f} {e:14,.0f} {fig.ratio():6.2f}x")
    print("vs erlang: " + ", ".join(f"{f.name} {f.ratio():.2f}x" for f in figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
