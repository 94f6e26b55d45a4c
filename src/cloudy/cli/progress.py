"""A long command's progress bar: rich's, on stderr, drawn only on a terminal.

`progress_bar` yields a function to call as work is done (``show(completed=n)`` or
``show(advance=1)``, with values for the bar's extra fields). The bar starts at the
first call — a command that forks workers has forked them by then, so they do not
inherit a live display — with SIGINT held back while it starts (a Ctrl-C then would
leave it drawing), and it is gone, the cursor back, when the block ends however it ends.
Off a terminal the function does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any, Protocol


class Show(Protocol):
    def __call__(
        self, *, completed: int | None = None, advance: int | None = None, **fields: object
    ) -> None: ...


def _nothing(*, completed: int | None = None, advance: int | None = None, **fields: object) -> None:
    return None


@contextlib.contextmanager
def progress_bar(label: str, total: int, **fields: Any) -> Iterator[Show]:
    """A bar named *label* to *total*; each of *fields* (with its first value) is shown
    after the count as ``{value} {name}``."""
    if not sys.stderr.isatty():
        yield _nothing
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )

    extra: list[ProgressColumn] = [TextColumn(f"{{task.fields[{name}]}} {name}") for name in fields]
    bar = Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(label, total=total, **fields)

    def show(*, completed: int | None = None, advance: int | None = None, **values: Any) -> None:
        if not bar.live.is_started:
            with _sigint_held():
                bar.start()
        bar.update(task, completed=completed, advance=advance, **values)

    try:
        yield show
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
