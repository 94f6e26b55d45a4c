"""The ``cloudy`` command's arguments: the parser and reading argv (the values' types
are in `cloudy.cli.values`).

`parse_args` reads a command line into a namespace with ``command`` set; a bad argument
raises `UsageError` (one line for the user, exit status 2).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import sys
from typing import NoReturn

from ..backend.health import DEFAULT_HEALTH_TIMEOUT
from ..backend.localnet import DEFAULT_DISCOVERY_TIMEOUT
from ..ring.model import MODELS
from ..ring.stream import DEFAULT_WINDOW
from . import values as v
from .discovery_args import add_discovery_arguments
from .heart import DEFAULT_INTENSITY
from .help import COMMANDS, MAIN_DESCRIPTION, MAIN_EPILOG, HelpFormatter
from .sim_args import add_sim_arguments
from .tls import add_tls_arguments
from .top_args import add_observer_arguments
from .values import parse_duration

__all__ = ["UsageError", "build_parser", "parse_args", "parse_duration"]


class UsageError(Exception):
    """A bad argument: one line to the user, exit status 2.

    *see* is the help to point at (``cloudy COMMAND --help``); None: the command's.
    """

    def __init__(self, message: str, *, see: str | None = None) -> None:
        super().__init__(message)
        self.see = see


# How long the experiment's nodes let a peer stay silent before declaring it lost: a
# lost slave is noticed within a second (the library's own default is 5 s).
DEFAULT_DETECT = 1.0
# How long `--slaves N` waits for N slaves to answer discovery before giving up.
DEFAULT_DISCOVER_TIMEOUT = 30.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, see=f"{self.prog} --help")


def _version() -> str:
    try:
        return importlib.metadata.version("cloudy")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return "(not installed)"


_COOKIE = (
    "the shared secret of the cluster (default: $CLOUDY_COOKIE, else the file "
    "~/.cloudy/cookie); other users may see a command line: on a shared machine "
    "prefer the variable or the file"
)
_HOST = "this node's address: 127.0.0.1 for this machine alone, or one of its own addresses"
_PORT = "TCP port to listen on (0: any free port)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="cloudy",
        description=MAIN_DESCRIPTION,
        epilog=MAIN_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cloudy {_version()}")
    sub = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser, metavar="COMMAND"
    )

    def command(name: str) -> argparse.ArgumentParser:
        text = COMMANDS[name]
        p: argparse.ArgumentParser = sub.add_parser(
            name,
            help=text.line,
            description=text.description,
            epilog=text.epilog,
            formatter_class=HelpFormatter,
        )
        return p

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--send-for",
            type=v.duration,
            metavar="TIME",
            help="send period: 2s, 1500ms, or seconds (default: 2s)",
        )
        p.add_argument(
            "--wait-for",
            type=v.duration,
            metavar="TIME",
            help="grace period: 1s, 500ms, or seconds (default: 1s)",
        )
        p.add_argument(
            "--with-seed",
            type=v.seed,
            metavar="SEED",
            help="seed of the random numbers (default: 0)",
        )
        p.add_argument(
            "--model", default="ring", choices=sorted(MODELS), help="how the slaves run the ring"
        )
        p.add_argument(
            "--tokens",
            type=v.whole(1, 1024, "tokens must be a whole number from 1 to 1024, not "),
            default=4,
            metavar="N",
            help="tokens travelling at once, for --model pipelined",
        )
        p.add_argument(
            "--window",
            type=v.whole(1, 1 << 24, "a window must be a whole number from 1 to 16777216, not "),
            default=None,
            metavar="N",
            help="messages a slave may run ahead of its approvals, for --model stream "
            f"(default: {DEFAULT_WINDOW})",
        )
        p.add_argument(
            "--plot",
            type=v.plot_file,
            metavar="FILE",
            help="draw the run to FILE (.png; cloudy[plot])",
        )
        p.add_argument(
            "--json",
            action="store_true",
            help='print the result as one JSON object (on failure: {"ok": false, "error": ...})',
        )

    def node_options(
        p: argparse.ArgumentParser, *, detect: bool = True, cookie: str = _COOKIE
    ) -> None:
        p.add_argument("--cookie", type=v.cookie, default=None, help=cookie)
        add_tls_arguments(p)
        if detect:
            p.add_argument(
                "--detect",
                type=v.duration,
                default=DEFAULT_DETECT,
                metavar="TIME",
                help=f"declare a silent peer lost after this long (default: {DEFAULT_DETECT:g}s)",
            )

    def metrics_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--metrics-port",
            type=v.port,
            default=None,
            metavar="N",
            help="serve the node's counters for Prometheus on this TCP port "
            "(http://HOST:N/metrics; needs cloudy[metrics])",
        )

    def discover_timeout_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--discover-timeout",
            type=v.duration,
            default=DEFAULT_DISCOVER_TIMEOUT,
            metavar="T",
            help="how long to wait for the --slaves to answer discovery "
            f"(default: {DEFAULT_DISCOVER_TIMEOUT:g}s)",
        )

    def fault_options(p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("faults (T counts from the start of SEND)")
        g.add_argument("--kill-slave-at", type=v.duration, metavar="T", help="kill -9 a slave node")
        g.add_argument(
            "--freeze-slave-at", type=v.freeze, metavar="T:D", help="SIGSTOP a slave node for D"
        )
        g.add_argument("--kill-master-at", type=v.duration, metavar="T", help="kill -9 the master")
        g.add_argument(
            "--freeze-master-at", type=v.freeze, metavar="T:D", help="SIGSTOP the master for D"
        )
        g.add_argument(
            "--fault-slave",
            type=v.count,
            metavar="K",
            help="the slave that slave faults hit, by ring position (default: one at random)",
        )

    p = command("slave")
    p.add_argument("host", help=_HOST)
    p.add_argument("port", type=v.port, help=f"{_PORT}; --heart needs a fixed one")
    add_discovery_arguments(p)
    node_options(p)
    metrics_option(p)
    # `cloudy local` passes this: the slave ends when its parent's pipe closes.
    p.add_argument("--exit-with-stdin", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--heart",
        action="store_true",
        help="run the slave as a child process and restart it whenever it dies",
    )
    p.add_argument(
        "--heart-intensity",
        type=v.intensity,
        default=DEFAULT_INTENSITY,
        metavar="R/T",
        help="with --heart: give up after more than R restarts within T seconds "
        f"(default: {DEFAULT_INTENSITY})",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="print results and errors only (not when it listens, is taken, or ends)",
    )

    p = command("master")
    p.add_argument("host", help=_HOST)
    p.add_argument("port", type=v.port, help=_PORT)
    p.add_argument("send_us", nargs="?", type=v.microseconds, help="send period in µs")
    p.add_argument("grace_us", nargs="?", type=v.microseconds, help="grace period in µs")
    p.add_argument("seed", nargs="?", type=v.seed, help="seed of the random numbers")
    p.add_argument(
        "--slaves",
        type=v.slaves,
        metavar="N",
        help="wait until this many slaves are found (default: those found in 1 s)",
    )
    p.add_argument(
        "--stable-for",
        type=v.duration,
        default=None,
        metavar="T",
        help="form only once the slaves found have stayed the same this long "
        "(default: 2s with --peers-dns, else 0s)",
    )
    discover_timeout_option(p)
    run_options(p)
    add_discovery_arguments(p)
    node_options(p)
    metrics_option(p)

    p = command("local")
    p.add_argument(
        "--slaves", type=v.slaves, default=4, metavar="N", help="number of slave processes"
    )
    discover_timeout_option(p)
    run_options(p)
    node_options(p, cookie="the cookie of the run's nodes (default: a random one of its own)")
    p.add_argument("--discovery-port", type=v.port, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show each slave's heart starting it (its restarts are always shown)",
    )
    fault_options(p)

    p = command("verify")
    p.add_argument("--with-seed", type=v.seed, default=0, metavar="SEED", help="seed of the run")
    p.add_argument("count", type=v.count, help="the number of messages the slaves agreed on")

    add_sim_arguments(command("sim"))

    p = command("peers")
    p.add_argument("host", help="the address whose interface discovery uses")
    p.add_argument(
        "--wait",
        type=v.duration,
        default=DEFAULT_DISCOVERY_TIMEOUT,
        metavar="T",
        help=f"how long to listen for answers (default {DEFAULT_DISCOVERY_TIMEOUT:g}s; "
        "a busy machine's nodes may answer late)",
    )
    add_discovery_arguments(p)
    node_options(p, detect=False)

    p = command("doctor")
    p.add_argument("host", help="the address the nodes of this machine would use")
    add_discovery_arguments(p)
    node_options(p, detect=False)

    p = command("health")
    p.add_argument("host", help="the node's address")
    p.add_argument("port", type=v.port, help="the node's TCP port")
    p.add_argument(
        "--timeout",
        type=v.duration,
        default=DEFAULT_HEALTH_TIMEOUT,
        metavar="T",
        help=f"how long to wait for its answer (default: {DEFAULT_HEALTH_TIMEOUT:g}s)",
    )
    node_options(p, detect=False)

    for name in ("top", "ps"):
        p = command(name)
        add_observer_arguments(p, name, v.duration)
        add_discovery_arguments(p)
        node_options(p, detect=False)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line *argv* (``sys.argv[1:]`` by default) read; raises `UsageError`."""
    argv = _glue_negative_values(argv)
    parser = build_parser()
    sub = parser._subparsers
    assert sub is not None
    action = next(a for a in sub._group_actions if isinstance(a, argparse._SubParsersAction))
    if not argv or argv[0] not in action.choices:
        return parser.parse_args(argv)  # --help, or an error naming the commands
    # each command's own parser, so that flags and positionals may be mixed
    command: argparse.ArgumentParser = action.choices[argv[0]]
    args = command.parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def _glue_negative_values(argv: list[str] | None) -> list[str]:
    """``--send-for -2s`` -> ``--send-for=-2s``, so that it is refused as a bad duration."""
    args = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    for arg in args:
        if out and out[-1] in _VALUE_FLAGS and re.match(r"^-[0-9.]", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


_VALUE_FLAGS = {
    "--send-for",
    "--wait-for",
    "--with-seed",
    "--slaves",
    "--discover-timeout",
    "--discovery-port",
    "--peers",
    "--heart-intensity",
    "--kill-slave-at",
    "--freeze-slave-at",
    "--kill-master-at",
    "--freeze-master-at",
    "--fault-slave",
    "--plot",
    "--tokens",
    "--window",
    "--detect",
    "--metrics-port",
    "--interval",
    "--nodes",
    "--seeds",
    "--first",
    "--seed",
    "--workers",
    "--rerun-every",
}
