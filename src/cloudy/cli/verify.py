"""``cloudy verify``: the <COUNT, SUM> a run must give, with its progress on a terminal.

The oracle adds COUNT terms left to right (as the slaves do), about two million a
second: a count in the billions takes minutes. On a terminal a progress bar shows how
far it got; piped, nothing but the result is printed. Ctrl-C ends it with one line.
"""

from __future__ import annotations

import argparse
import sys

from ..ring.result import PROGRESS_EVERY, expected_result
from .progress import progress_bar

__all__ = ["cmd_verify"]

# Below this many messages the result comes within a fraction of a second: no bar.
SHOW_PROGRESS_FROM = 16 * PROGRESS_EVERY


def cmd_verify(args: argparse.Namespace) -> int:
    """Print the oracle's <COUNT, SUM> for ``--with-seed`` and COUNT; 130 on Ctrl-C."""
    count, seed = args.count, args.with_seed
    done = 0
    try:
        with progress_bar("verify", count) as bar:

            def progress(n: int) -> None:
                nonlocal done
                done = n
                if count >= SHOW_PROGRESS_FROM:
                    bar(completed=n)

            result = expected_result(seed, count, progress)
    except KeyboardInterrupt:
        print(
            f"cloudy: verify interrupted after {done:,} of {count:,} messages; no result",
            file=sys.stderr,
        )
        return 130
    print(result)
    return 0
