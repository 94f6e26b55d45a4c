"""The cloudy experiment's three models side by side: ring, pipelined and stream.

Run by hand: ``.venv/bin/python benchmarks/models.py [--runs 3] [--slaves 4]`` or, for
the rate against the number of slaves, ``... --scaling [--slaves-list 1,2,4,8,16]``
(``--plot FILE`` draws it too: needs cloudy[plot]).
Each run is ``cloudy local --json --slaves S --send-for 2s --wait-for 1s --with-seed R
--model M`` (R counts up from ``--seed``, one seed per run); ``--models`` picks the
models, ``--tokens`` and ``--window`` are passed on to the pipelined and stream models.
A run counts only if its slaves agreed and its SUM is the oracle's for its COUNT
(`cloudy.ring.expected_result`); a failed run says why, and its stderr tail follows.

By default each model runs ``--runs`` times, the models interleaved (ring, pipelined,
stream, ring, ...) so that the machine's noise hits them alike. One line per run, then
per model: the median agreed rate, its range, the CPU seconds per node (the median
slave's and the master's) and the RSS growth per agreed message. `cloudy local` does
not report memory, so it is sampled from outside every 50 ms: the VmRSS of each slave
node process (the child of a ``cloudy slave --heart`` child of `cloudy local`). A
node's growth is its peak less its RSS when SEND began (the last sample before the
progress line ``cloudy: SEND``; its first sample if none came before: then the run's
line says so), so that starting Python and cloudy is not counted; the figure is the
median node's growth over the agreed COUNT.

The last line holds the figures: each model's median rate, and its RSS per message;
with ``--scaling``, each model's rate at each number of slaves.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from _common import Parser, positive, stop_child, whole

from cloudy.cli.args import parse_duration
from cloudy.cli.plot import PlotError, check_path, draw_scaling
from cloudy.ring import expected_result
from cloudy.ring.stream import DEFAULT_WINDOW

MODELS = ("ring", "pipelined", "stream")
SAMPLE_EVERY = 0.05
STDERR_TAIL = 15


def duration(text: str) -> str:
    """An argument type: a duration cloudy accepts (kept as written, for its command line)."""
    try:
        parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _parse_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


# --- the slave nodes' RSS, from outside ----------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for path in glob.glob(f"/proc/{pid}/task/*/children"):
        with contextlib.suppress(OSError), open(path) as f:
            found += map(int, f.read().split())
    return found


def _is_heart(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return False
    return b"slave" in words and b"--heart" in words


def _rss(pid: int) -> int | None:
    """*pid*'s VmRSS in bytes; None if it has gone (or is a zombie, which has none)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


@dataclass
class NodeRss:
    base: int  # the last sample before SEND (or the first, if none came before SEND)
    peak: int
    before_send: bool


class RssSampler:
    """Samples the RSS of every slave node under *root* every 50 ms, in a thread, from `start`."""

    def __init__(self) -> None:
        self.root = 0
        self.send_began = threading.Event()  # set when `cloudy local` says SEND
        self.nodes: dict[int, NodeRss] = {}
        self.pids: set[int] = set()  # hearts and nodes: each must be gone after the run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def start(self, root: int) -> None:
        self.root = root
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_EVERY)

    def sample(self) -> None:
        before_send = not self.send_began.is_set()
        for heart in filter(_is_heart, _children(self.root)):
            self.pids.add(heart)
            for node in _children(heart):
                self.pids.add(node)
                rss = _rss(node)
                if rss is None:
                    continue
                seen = self.nodes.get(node)
                if seen is None:
                    self.nodes[node] = NodeRss(rss, rss, before_send)
                    continue
                seen.peak = max(seen.peak, rss)
                if before_send:
                    seen.base = rss

    def growth(self) -> float | None:
        """The median node's growth in bytes."""
        if not self.nodes:
            return None
        return statistics.median(n.peak - n.base for n in self.nodes.values())

    def base(self) -> float | None:
        return statistics.median(n.base for n in self.nodes.values()) if self.nodes else None

    def late(self) -> int:
        """Nodes first sampled after SEND had begun."""
        return sum(not n.before_send for n in self.nodes.values())

    def left_running(self, grace: float) -> list[int]:
        """The hearts and nodes still running *grace* s after the run; each is killed."""
        deadline = time.monotonic() + grace
        alive = [p for p in self.pids if _rss(p) is not None]
        while alive and time.monotonic() < deadline:
            time.sleep(SAMPLE_EVERY)
            alive = [p for p in alive if _rss(p) is not None]
        for pid in alive:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        return alive


# --- one run ----------------------------------------------------------------------------


@dataclass
class Run:
    model: str
    slaves: int
    seed: int
    report: dict[str, Any] | None = None
    failure: str = ""  # why the run does not count; "" if it does
    stderr: list[str] = field(default_factory=list)
    rss_growth: float | None = None
    rss_base: float | None = None
    late_nodes: int = 0
    left_running: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report is not None and not self.failure

    @property
    def rate(self) -> float:
        return float(self.report["msgs_per_s"]) if self.report is not None else 0.0

    @property
    def count(self) -> int:
        return int(self.report["count"]) if self.report is not None else 0

    @property
    def slave_cpu(self) -> float:
        assert self.report is not None
        return statistics.median(float(s["cpu_s"]) for s in self.report["slaves"])

    @property
    def rss_per_msg(self) -> float | None:
        if self.rss_growth is None or not self.count:
            return None
        return self.rss_growth / self.count


def command(model: str, slaves: int, seed: int, args: argparse.Namespace) -> list[str]:
    extra: list[str] = []
    if model == "pipelined" and args.tokens is not None:
        extra = ["--tokens", str(args.tokens)]
    if model == "stream" and args.window is not None:
        extra = ["--window", str(args.window)]
    return [
        *(sys.executable, "-m", "cloudy", "local", "--json", "--slaves", str(slaves)),
        *("--send-for", args.send_for, "--wait-for", args.wait_for),
        *("--with-seed", str(seed), "--model", model, *extra),
    ]


def execute(model: str, slaves: int, seed: int, args: argparse.Namespace) -> Run:
    """One ``cloudy local`` run, its nodes' RSS sampled; the child is ended come what may."""
    run = Run(model, slaves, seed)
    sampler, stdout = RssSampler(), [""]

    def read_stderr(pipe: IO[str]) -> None:
        for line in pipe:
            if line.startswith("cloudy: SEND"):
                sampler.send_began.set()
            run.stderr.append(line.rstrip("\n"))

    def read_stdout(pipe: IO[str]) -> None:
        stdout[0] = pipe.read()

    child = subprocess.Popen(
        command(model, slaves, seed, args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    readers = [
        threading.Thread(target=read_stderr, args=(child.stderr,), daemon=True),
        threading.Thread(target=read_stdout, args=(child.stdout,), daemon=True),
    ]
    status: int | None = None
    try:
        sampler.start(child.pid)
        for reader in readers:
            reader.start()
        status = child.wait(args.timeout)
    except subprocess.TimeoutExpired:
        pass
    finally:
        stop_child(child)
        sampler.stop()
        for reader in readers:
            if reader.is_alive():  # the slaves share the pipe: they end with `cloudy local`
                reader.join(5.0)
    run.rss_growth, run.rss_base, run.late_nodes = sampler.growth(), sampler.base(), sampler.late()
    run.left_running = sampler.left_running(5.0)
    run.failure = judge(run, status, stdout[0])
    return run


def judge(run: Run, status: int | None, stdout: str) -> str:
    """Why *run* does not count ("" if it does); keeps its report when it has one."""
    if status is None:
        return "FAILED: timed out"
    try:
        run.report = json.loads(stdout)
    except ValueError:
        return f"FAILED: exit status {status}, no JSON report"
    if run.report is not None and run.report.get("ok") is False:  # cloudy says why
        failure = f"FAILED: exit status {status}: {run.report.get('error')}"
        run.report = None
        return failure
    if not run.report["agree"]:
        return "FAILED: the slaves disagree"
    expected = expected_result(run.seed, run.count).sum
    if expected != run.report["sum"]:
        return f"FAILED: SUM {run.report['sum']!r} is not the oracle's {expected!r}"
    if status != 0:
        return f"FAILED: exit status {status}"
    return ""


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def _per_msg(n: float | None) -> str:
    if n is None:
        return "-"
    return f"{n:,.0f} B" if abs(n) >= 10 else f"{n:.1f} B"


def describe(run: Run) -> str:
    slaves = f"{run.slaves:2} slave" + ("s" if run.slaves != 1 else " ")
    line = f"{run.model:9} seed {run.seed:<3} {slaves}: "
    if run.report is not None:
        line += (
            f"{run.count:>10,} agreed {run.rate:>11,.0f} msgs/s  "
            f"cpu master {run.report['master_cpu_s']:.2f} s, slave {run.slave_cpu:.2f} s  "
        )
    if run.rss_growth is not None and run.rss_base is not None:
        line += f"rss +{_mb(run.rss_growth)} on {_mb(run.rss_base)}, "
        line += f"{_per_msg(run.rss_per_msg)}/msg  "
    line += run.failure or "ok"
    if run.late_nodes:
        line += f"  ({run.late_nodes} nodes first sampled after SEND began)"
    if run.left_running:
        line += f"  (killed, left running: {' '.join(map(str, run.left_running))})"
    return line


def report_failure(run: Run) -> None:
    """The child's stderr tail, on stderr."""
    if run.failure:
        tail = run.stderr[-STDERR_TAIL:]
        print(f"  stderr of cloudy local, last {len(tail)} lines:", file=sys.stderr)
        for line in tail:
            print(f"    {line}", file=sys.stderr)
        sys.stderr.flush()


# --- the two modes -----------------------------------------------------------------------


def run_all(plan: list[tuple[str, int]], args: argparse.Namespace) -> list[Run]:
    """Each (model, slaves) of *plan* in turn, with seeds counting up from ``--seed``."""
    runs = []
    for seed, (model, slaves) in enumerate(plan, start=args.seed):
        run = execute(model, slaves, seed, args)
        print(describe(run), flush=True)
        report_failure(run)
        runs.append(run)
    return runs


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def compare(models: list[str], args: argparse.Namespace) -> bool:
    runs = run_all([(m, args.slaves) for _ in range(args.runs) for m in models], args)
    summary, rss = [], []
    for model in models:
        mine = [r for r in runs if r.model == model]
        good = [r for r in mine if r.ok]
        failed = len(mine) - len(good)
        per_msg = [r.rss_per_msg for r in good if r.rss_per_msg is not None]
        rss_figure = _per_msg(_median(per_msg) if per_msg else None)
        if not good:
            print(f"{model}: no run counts ({failed} failed)")
            summary.append(f"{model} FAILED")
            rss.append(f"{model} -")
            continue
        rates = [r.rate for r in good]
        print(
            f"{model}: median {_median(rates):,.0f} msgs/s "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f}) over {_runs(len(good))}"
            + (f", {failed} failed" if failed else "")
            + f"; cpu per node: slave {_median([r.slave_cpu for r in good]):.2f} s, "
            f"master {_median([float(r.report['master_cpu_s']) for r in good if r.report]):.2f} s"
            f"; rss growth {rss_figure} per agreed msg"
        )
        summary.append(
            f"{model} {_median(rates):,.0f}/s" + (f" ({failed} failed)" if failed else "")
        )
        rss.append(f"{model} {rss_figure}")
    print(
        "  ".join(summary)
        + f"  (median of {args.runs}, {args.slaves} slaves; rss/msg {' '.join(rss)})"
    )
    return all(r.ok for r in runs)


def scaling(models: list[str], args: argparse.Namespace) -> bool:
    counts: list[int] = args.slaves_list
    plan = [(m, n) for n in counts for _ in range(args.runs) for m in models]
    runs = run_all(plan, args)

    def cell(model: str, n: int) -> tuple[str, str]:
        mine = [r for r in runs if r.model == model and r.slaves == n]
        good = [r.rate for r in mine if r.ok]
        rate = f"{_median(good):,.0f}" if good else "FAILED"
        verdict = "agreed" if len(good) == len(mine) else f"{len(mine) - len(good)} failed"
        return rate, verdict

    print()
    print(f"{'slaves':>6}" + "".join(f"{m + ' msgs/s':>26}" for m in models))
    for n in counts:
        cells = [cell(m, n) for m in models]
        print(f"{n:>6}" + "".join(f"{rate:>17} {verdict:>8}" for rate, verdict in cells))
    rows = [f"{m} " + " ".join(cell(m, n)[0] for n in counts) for m in models]
    each = "1 run each" if args.runs == 1 else f"median of {args.runs}"
    slaves = ", ".join(map(str, counts))
    print("  ".join(rows) + f"  (msgs/s with {slaves} slaves, {each})")
    if args.plot:
        rates: dict[str, dict[int, list[float]]] = {m: {n: [] for n in counts} for m in models}
        for r in runs:
            if r.ok:
                rates[r.model][r.slaves].append(r.rate)
        title = f"agreed rate against slaves ({each}; send {args.send_for}, wait {args.wait_for})"
        try:
            draw_scaling(rates, args.plot, title)
            print(f"wrote {args.plot}", file=sys.stderr)
        except PlotError as e:
            print(f"no picture: {e}", file=sys.stderr)
    return all(r.ok for r in runs)


def main() -> int:
    parser = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS), help="comma list (all three)")
    parser.add_argument("--runs", type=whole(1), help="runs of each model (3; with --scaling: 1)")
    parser.add_argument("--slaves", type=whole(1), default=4, help="slaves (4)")
    parser.add_argument("--scaling", action="store_true", help="rate against slaves")
    parser.add_argument("--slaves-list", default="1,2,4,8,16", help="for --scaling")
    parser.add_argument("--plot", metavar="FILE", help="with --scaling: draw it (.png)")
    parser.add_argument("--tokens", type=whole(1, 1024), help="for pipelined (cloudy's default: 4)")
    parser.add_argument("--window", type=whole(1, 1 << 24), help=f"for stream ({DEFAULT_WINDOW})")
    parser.add_argument("--send-for", type=duration, default="2s")
    parser.add_argument("--wait-for", type=duration, default="1s")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run (0)")
    parser.add_argument("--timeout", type=positive, default=120.0, help="per run, s (120)")
    args = parser.parse_args()
    models = _parse_list(args.models)
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        parser.error(f"--models: choose among {', '.join(MODELS)}, not {args.models!r}")
    if args.plot:
        if not args.scaling:
            parser.error("--plot draws the rate against slaves: add --scaling")
        try:
            check_path(args.plot)
        except PlotError as e:
            parser.error(f"--plot: {e}")
    if parse_duration(args.send_for) == 0:
        parser.error("argument --send-for: the send period must be longer than zero")
    try:
        args.slaves_list = [whole(1)(n) for n in _parse_list(args.slaves_list)]
    except argparse.ArgumentTypeError as e:
        parser.error(f"argument --slaves-list: {e}")
    if not args.slaves_list:
        parser.error("argument --slaves-list: give at least one number of slaves")
    if args.runs is None:
        args.runs = 1 if args.scaling else 3
    tokens = args.tokens if args.tokens is not None else 4
    window = args.window if args.window is not None else DEFAULT_WINDOW
    print(
        f"models {', '.join(models)} (pipelined: {tokens} tokens, stream: window {window}); "
        f"send {args.send_for}, wait {args.wait_for}; {_runs(args.runs)} each, interleaved",
        flush=True,
    )
    # SIGTERM as Ctrl-C: the run's `cloudy local` is ended on the way out
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        ok = scaling(models, args) if args.scaling else compare(models, args)
    except KeyboardInterrupt:  # the run's `cloudy local` has been ended by then
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
