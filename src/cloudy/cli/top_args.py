"""The arguments of ``cloudy top`` and ``cloudy ps`` (their own, besides discovery and
the cookie, which `cloudy.cli.args` adds as for every tool)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from ..identity import NodeId

__all__ = ["add_observer_arguments"]


def _node(text: str) -> NodeId:
    try:
        return NodeId.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_observer_arguments(
    p: argparse.ArgumentParser, command: str, duration: Callable[[str], float]
) -> None:
    """Add *command*'s (``top`` or ``ps``) arguments to *p*; *duration* reads --interval."""
    if command == "top":
        p.add_argument(
            "nodes", nargs="*", type=_node, metavar="NODE", help="host:port (default: discovery)"
        )
        p.add_argument(
            "--node",
            type=_node,
            metavar="NODE",
            help="whose processes to show (default: the first)",
        )
        p.add_argument("--once", action="store_true", help="print one view and exit")
        interval = "refresh every"
    else:
        p.add_argument("node", type=_node, metavar="NODE", help="host:port or nid://host:port:0")
        p.add_argument("--json", action="store_true", help="print the processes as a JSON list")
        interval = "messages per second over two samples this far apart; 0: one sample"
    p.add_argument(
        "--interval", type=duration, default=1.0, metavar="TIME", help=f"{interval} (default: 1s)"
    )
    p.add_argument(
        "--host",
        help="the address of this command's own node (default: the first NODE's host, else "
        "127.0.0.1); discovery asks on its interface",
    )
