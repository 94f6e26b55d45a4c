"""How the ``cloudy`` command reports a failure: one line on stderr, a JSON object on
stdout under ``--json``, and the exit status (2: a bad argument, 1: a failed run,
130: Ctrl-C)."""

from __future__ import annotations

import argparse
import json
import sys

from .args import UsageError
from .help import COMMANDS

__all__ = ["explain", "report_failure"]


def report_failure(error: BaseException, argv: list[str], args: argparse.Namespace | None) -> int:
    """Tell the user about *error*, raised running *argv* (*args*: as parsed, if it was);
    the exit status."""
    command = args.command if args is not None else next(iter(argv[:1]), None)
    if command not in COMMANDS:
        command = None
    if isinstance(error, UsageError):
        see = error.see or (f"cloudy {command} --help" if command else "cloudy --help")
        line, status = f"{error} (see {see})", 2
    elif isinstance(error, KeyboardInterrupt):
        line, status = "interrupted", 130
    else:
        line, status = explain(error), 1
    print(f"cloudy: {line}", file=sys.stderr, flush=True)
    if args.json if args is not None and "json" in args else "--json" in argv:
        failure = {"ok": False, "error": line, "command": command, "exit_status": status}
        print(json.dumps(failure), flush=True)
    return status


def explain(error: BaseException) -> str:
    """*error* in one line: an `OSError` by its words (and file), without ``[Errno N]``."""
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error) or type(error).__name__
