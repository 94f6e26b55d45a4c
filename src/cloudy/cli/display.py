"""What `cloudy master` and `cloudy local` show while a run goes on: its phases.

A run has four phases: START (finding the slaves, then starting the ring), SEND,
GRACE and STOP. A `Display` shows them on stderr:

- on a terminal, live (rich): one row per phase begun, each with its own bar, time
  and count (``START … 0.4 s  4 of 4 slaves found``, ``SEND … 2.0 s  24,455
  messages``, ``STOP … 0.1 s  24,455 agreed; 4 results``), left on the screen,
  finished, when the run ends. Nothing is written across it: the lines of child
  processes (`sink`) and of faults (`writer`) are printed above it through its
  console, and so is whatever this process prints on stdout or stderr meanwhile
  (rich redirects both while it is live);
- elsewhere (piped), one plain line as each phase begins::

      cloudy: START 4 of 4 slaves found in 0.4 s
      cloudy: SEND  for 2 s
      cloudy: GRACE for 1 s, after 24455 messages
      cloudy: STOP  24455 messages agreed

`display_for` picks the form. Use `shown` around the run: the display is the
master's `Progress`, `found` is told what discovery found, `done` the report.
"""

from __future__ import annotations

import collections
import contextlib
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO, cast

from ..ring import Params, Report

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

__all__ = ["Display", "Lines", "TerminalDisplay", "display_for"]

Lines = Callable[[str], None]
"""Where lines go, one call per line (without its newline)."""


@dataclass
class _Phase:
    name: str
    began: float
    ended: float | None = None
    share: float | None = 0.0  # how much of it is done, 0..1; None: nobody knows (a pulse)
    count: str = ""

    def seconds(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.began


class Display:
    """The run's phases as plain lines on *err*, one as each phase begins (the module
    says which). *want*: the number of slaves to find (None: whoever answers), for at
    most *within* seconds."""

    def __init__(
        self, params: Params, want: int | None, within: float, err: TextIO | None = None
    ) -> None:
        self.params, self.want, self.within = params, want, within
        self.err = err or sys.stderr
        self.lock = threading.Lock()  # one line at a time on a shared stream
        self.phases: list[_Phase] = []  # begun so far (only appended to: read by a thread)
        self.slaves = 0  # how many slaves discovery found (at most *want*)
        self.started = False  # whether the ring has started (discovery is over)

    # --- what the master tells it ----------------------------------------------------

    def found(self, count: int) -> None:
        """Discovery found *count* slaves (in its latest round)."""
        self.slaves = count if self.want is None else min(count, self.want)
        start = self._current()
        start.count = self._found()
        if self.want:
            start.share = self.slaves / self.want

    def __call__(self, phase: str, left: float, seen: int) -> None:
        """The master's `Progress`: *phase*, the seconds left of it, the messages so far."""
        now = time.monotonic()
        current = self._current()
        if phase == "START" and not self.started:
            self.started = True
            current.share, current.count = 1.0, self._found(over=True)
            self.began(current, seen)
        elif phase != current.name:
            current.ended, current.share = now, 1.0
            current = _Phase(phase, now)
            self.phases.append(current)
            self.began(current, seen)
        length = {"SEND": self.params.send_for, "GRACE": self.params.wait_for}.get(phase)
        if length:
            current.share = min(max(1.0 - left / length, 0.0), 1.0)
            current.count = f"{seen:,} messages"
        elif phase == "STOP" and current.ended is None:
            current.share, current.count = None, f"{seen:,} agreed; waiting for the results"

    def done(self, report: Report) -> None:
        """The run is over: *report* is what the slaves said."""
        stop = self._current()
        stop.ended, stop.share = time.monotonic(), 1.0
        lost = f", {len(report.lost)} lost" if report.lost else ""
        stop.count = f"{report.count:,} agreed; {len(report.slaves)} results{lost}"

    def stopped(self, why: str) -> None:
        """The run stopped before its end: the phase it was in stays as it was, saying *why*."""
        phase = self._current()
        if phase.ended is None:
            phase.ended = time.monotonic()
            phase.share = phase.share or 0.0
            if phase.name == "START" and not self.started:  # no longer waiting
                phase.count = self._found(over=True)
            phase.count = f"{phase.count} ({why})".lstrip()

    def _current(self) -> _Phase:
        if not self.phases:
            self.phases.append(_Phase("START", time.monotonic(), share=None))
        return self.phases[-1]

    def _found(self, over: bool = False) -> str:
        if self.want is None:
            return f"{self.slaves} slaves found" if over or self.slaves else "looking for slaves"
        waiting = "" if over else f" (waiting up to {self.within:g} s)"
        return f"{self.slaves} of {self.want} slaves found{waiting}"

    # --- what a person sees ----------------------------------------------------------

    def began(self, phase: _Phase, seen: int) -> None:
        """*phase* has begun (START: the slaves are found): one line."""
        now = time.monotonic()
        line = {
            "START": f"{self._found(over=True)} in {phase.seconds(now):.1f} s",
            "SEND": f"for {self.params.send_for:g} s",
            "GRACE": f"for {self.params.wait_for:g} s, after {seen} messages",
            "STOP": f"{seen} messages agreed",
        }.get(phase.name, "")
        self.sink(self.err)(f"cloudy: {phase.name:5} {line}".rstrip())

    def sink(self, stream: TextIO) -> Lines:
        """Where lines for *stream* go: written to it, each with its newline, whole."""

        def write(line: str) -> None:
            with self.lock, contextlib.suppress(OSError, ValueError):
                stream.write(line + "\n")  # one write: others share the stream
                stream.flush()

        return write

    def writer(self, stream: TextIO) -> TextIO:
        """A file for code that writes to *stream* (each whole line goes to `sink`)."""
        return cast(TextIO, _LineWriter(self.sink(stream)))

    @contextlib.contextmanager
    def shown(self) -> Iterator[Display]:
        """Shown while inside (the START phase begins)."""
        self._current()
        yield self


class TerminalDisplay(Display):
    """The run's phases live on the terminal *err*, and lines for it printed above.

    One thread draws: the lines for the terminal (from `sink`, and whatever this
    process writes on stdout and stderr meanwhile) wait in a queue, and a drawing
    thread prints them above the display and redraws it ten times a second. Printing
    from several threads at once could leave a stale copy of the display on the
    screen (each would move the cursor by a height another had just changed).
    """

    live: Live | None = None

    def __init__(
        self, params: Params, want: int | None, within: float, err: TextIO | None = None
    ) -> None:
        super().__init__(params, want, within, err)
        self._waiting: collections.deque[str] = collections.deque()
        self._drawing = threading.Lock()

    def began(self, phase: _Phase, seen: int) -> None:
        pass  # the row shows it

    def sink(self, stream: TextIO) -> Lines:
        plain = super().sink(stream)
        if not stream.isatty():
            return plain  # (stdout piped, say): nothing to write across

        def write(line: str) -> None:
            if self.live is None:
                plain(line)
            else:
                self._waiting.append(line)  # printed above the display by `_draw`

        return write

    def _draw(self) -> None:
        """Print the lines waiting above the display, then redraw it (one thread at a
        time: the only writer while it is live)."""
        from rich.text import Text

        with self._drawing:
            live = self.live
            if live is None:
                return
            while self._waiting:
                # as a person would see it on the terminal: no markup, no colours, and
                # not wrapped by rich (the terminal wraps it, so it can be copied whole)
                line = Text(self._waiting.popleft())
                live.console.print(line, soft_wrap=True, highlight=False)
            if live.is_started:  # (once stopped, the lines go below it)
                live.refresh()

    @contextlib.contextmanager
    def shown(self) -> Iterator[Display]:
        from rich.console import Console
        from rich.live import Live

        self._current()
        live = Live(
            console=Console(file=self.err),
            get_renderable=self._render,
            auto_refresh=False,  # drawn by our own thread (see the class)
            redirect_stdout=False,
            redirect_stderr=False,
        )
        done = threading.Event()

        def draw_often() -> None:
            while not done.wait(0.1):
                with contextlib.suppress(Exception):
                    self._draw()

        saved = sys.stdout, sys.stderr
        drawer = threading.Thread(target=draw_often, name="display", daemon=True)
        try:
            with live:
                self.live = live
                # what this process prints meanwhile goes above the display as well
                if saved[0].isatty():
                    sys.stdout = cast(TextIO, _LineWriter(self.sink(saved[0]), saved[0]))
                sys.stderr = cast(TextIO, _LineWriter(self.sink(saved[1]), saved[1]))
                drawer.start()
                try:
                    yield self
                except BaseException as e:
                    self.stopped("interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
                    raise
                finally:
                    done.set()
                    drawer.join()
                    sys.stdout, sys.stderr = saved
                    self._draw()  # the last lines, and the display as it ends
        finally:
            self.live = None

    def stopped(self, why: str) -> None:
        super().stopped(why)
        self._draw()
        with self._drawing:
            live = self.live
            if live is not None and live.is_started:
                live.stop()  # drawn once more, as it stopped; the cursor back

    def _render(self) -> RenderableType:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        now = time.monotonic()
        width = self.live.console.width if self.live is not None else 80
        bar = max(10, min(40, width - 56))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", min_width=5)
        grid.add_column(width=bar)
        grid.add_column(justify="right", min_width=7)
        grid.add_column()
        for phase in list(self.phases):
            share = phase.share
            grid.add_row(
                phase.name,
                ProgressBar(total=None if share is None else 1.0, completed=share or 0.0),
                f"{phase.seconds(now):.1f} s",
                phase.count,
            )
        return grid


class _LineWriter(io.TextIOBase):
    """A text file whose every whole line goes to *lines* (standing in for *like*, a
    terminal, if given: it says it is one)."""

    def __init__(self, lines: Lines, like: TextIO | None = None) -> None:
        super().__init__()
        self.lines, self.part, self.like = lines, "", like

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.like is not None and self.like.isatty()

    def fileno(self) -> int:
        if self.like is None:
            return super().fileno()
        return self.like.fileno()

    def write(self, text: str) -> int:
        *whole, self.part = (self.part + text).split("\n")
        for line in whole:
            self.lines(line)
        return len(text)


def display_for(params: Params, want: int | None, within: float) -> Display:
    """The live display if stderr is a terminal, else the plain lines."""
    kind = TerminalDisplay if sys.stderr.isatty() else Display
    return kind(params, want, within)
