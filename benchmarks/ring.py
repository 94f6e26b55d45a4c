"""The cloudy experiment, 4 slave processes, 2 s send period: agreed messages, rate, CPU.

Run by hand: ``.venv/bin/python benchmarks/ring.py [--slaves 4] [--send-for 2s]``.
The last line holds the figures: agreed COUNT, msgs/s and the CPU seconds of every
node. (Against Erlang/OTP in the same sitting: ``benchmarks/vs_erlang.py``.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from _common import Parser, stderr_tail, whole


def main() -> int:
    parser = Parser(description=__doc__)
    parser.add_argument("--slaves", type=whole(1), default=4)
    parser.add_argument("--send-for", default="2s")
    parser.add_argument("--wait-for", default="1s")
    parser.add_argument("--with-seed", default="0")
    args = parser.parse_args()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "cloudy", "local", "--json"),
            *("--slaves", str(args.slaves), "--send-for", args.send_for),
            *("--wait-for", args.wait_for, "--with-seed", args.with_seed),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 2:  # a bad argument: cloudy's own line says which
        lines = done.stderr.strip().splitlines() or ["bad arguments"]
        why = re.sub(r" \(see cloudy .*--help\)$", "", lines[-1].removeprefix("cloudy: "))
        print(f"ring.py: {why} (see ring.py --help)", file=sys.stderr)
        return 2
    try:
        report = json.loads(done.stdout)
    except ValueError:
        report = {}
    if done.returncode not in (0, 1) or "agree" not in report:
        print(
            f"ring.py: cloudy local failed (exit status {done.returncode}, "
            f"with {sys.executable}); its stderr ends:\n{stderr_tail(done.stderr)}",
            file=sys.stderr,
        )
        return 1
    cpu = " ".join(
        f"{s['node'].removeprefix('nid://').removesuffix(':0')}={s['cpu_s']:.2f}s"
        for s in report["slaves"]
    )
    print(
        f"ring: {len(report['slaves'])} slaves, {report['send_for']:g} s send, "
        f"agree={report['agree']} count={report['count']} "
        f"msgs/s={report['msgs_per_s']:,.0f} "
        f"cpu: master={report['master_cpu_s']:.2f}s {cpu}"
    )
    return 0 if report["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
