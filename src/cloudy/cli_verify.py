"""``cloudy verify``: the <COUNT, SUM> a run must give, with its progress on a terminal.

The oracle adds COUNT terms left to right (as the slaves do), about two million a
second: a count in the billions takes minutes. On a terminal a progress bar shows how
far it got; piped, nothing but the result is printed. Ctrl-C ends it with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator

from .ring.result import PROGRESS_EVERY, expected_result

__all__ = ["cmd_verify"]

# Below this many messages the result comes within a fraction of a second: no bar.
SHOW_PROGRESS_FROM = 16 * PROGRESS_EVERY


def cmd_verify(args: argparse.Namespace) -> int:
    """Print the oracle's <COUNT, SUM> for ``--with-seed`` and COUNT; 130 on Ctrl-C."""
    count, seed = args.count, args.with_seed
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done = n
        show(n)

    try:
        with _display(count) as show:
            result = expected_result(seed, count, progress)
    except KeyboardInterrupt:
        print(
            f"cloudy: verify interrupted after {done:,} of {count:,} messages; no result",
            file=sys.stderr,
        )
        return 130
    print(result)
    return 0


@contextlib.contextmanager
def _display(count: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr if it is a terminal and *count* is large."""
    if count < SHOW_PROGRESS_FROM or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("verify"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("verify", total=count)
    try:
        with _sigint_held():  # a Ctrl-C while it starts would leave it drawing
            bar.start()
        yield lambda n: bar.update(task, completed=n)
    finally:
        bar.stop()  # (a no-op if it never started)


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT held back until the block ends (where the platform can), then delivered."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
