"""Pictures of the experiment (``--plot FILE``), drawn with matplotlib, headless (Agg).

`draw_run` draws one run from its `Report`: each slave's agreed count over time, the
phases, the slaves lost and rejoined, and the agreed rate; `draw_scaling` draws the
models' rates against the number of slaves (``benchmarks/models.py --plot``).
matplotlib is an optional extra (``cloudy[plot]``), imported only here and only when
a picture is asked for: `require` says at once, in one line, when it is missing.
"""

from __future__ import annotations

import itertools
import os
import statistics
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import CloudyError
from ..ring.master import Report, SlaveReport
from ..ring.timeline import Event

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import Formatter

__all__ = [
    "FORMATS",
    "PlotError",
    "check_path",
    "draw_run",
    "draw_scaling",
    "picture",
    "require",
    "run_figure",
]

FORMATS = (".png", ".svg", ".pdf")
MISSING = "matplotlib is not installed: install cloudy[plot] (pip install 'cloudy[plot]')"
PHASE_COLOURS = {"START": "#eeeeee", "SEND": "#d8f0d8", "GRACE": "#fdf1c7", "STOP": "#e6e0f3"}
MARKS = {
    "lost": ("#c62828", "lost"),
    "rejoined": ("#2e7d32", "rejoined"),
    "late": ("#ef6c00", "back late"),
}
# the rate is the agreed count's growth over this many samples (a smoother line)
RATE_SPAN = 4


class PlotError(CloudyError):
    """No picture: matplotlib is missing, or the file cannot be written."""


def require() -> None:
    """Raise `PlotError` (one line: install cloudy[plot]) unless matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError(MISSING) from None


def check_path(path: str) -> str:
    """*path* if a picture can be written there (a known format, an existing folder);
    else `PlotError`. Also `require`s matplotlib."""
    if os.path.splitext(path)[1].lower() not in FORMATS:
        raise PlotError(f"not a picture file name: {path!r} (end it in {', '.join(FORMATS)})")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise PlotError(f"no such folder for the picture: {folder!r}")
    require()
    return path


def _agg() -> None:
    """Draw headless (Agg): no display needed, none opened; before pyplot is imported."""
    require()
    import matplotlib

    matplotlib.use("Agg")


def _save(fig: Figure, path: str) -> None:
    _agg()
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise PlotError(f"cannot write the picture {path!r}: {e.strerror or e}") from None
    finally:
        plt.close(fig)


def _thousands() -> Formatter:
    """Tick labels as whole numbers with thousands separators (12,000, not 1.2e4)."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: f"{v:,.0f}")


def _short(node: str) -> str:
    return node.removeprefix("nid://").removesuffix(":0")


def _title(report: Report) -> str:
    n = len(report.slaves) + len(report.lost)
    head = (
        f"cloudy experiment: {report.model} model, {n} slaves, send {report.send_for:g} s, "
        f"grace {report.wait_for:g} s, seed {report.seed}"
    )
    if report.agree:
        verdict = f"all {len(report.slaves)} agree on {report.count:,} messages"
    else:
        verdict = f"the {len(report.slaves)} slaves DO NOT agree"
    faults = [f"{len(report.lost)} lost"] if report.lost else []
    faults += [f"{len(report.rejoined)} lost and rejoined"] if report.rejoined else []
    rate = f"{report.msgs_per_s:,.0f} msgs/s in the send period"
    return f"{head}\n{verdict}: {rate}" + (f" ({', '.join(faults)})" if faults else "")


def _phases(ax: Axes, events: Sequence[Event], label: bool) -> None:
    """Shade each phase, from its start to the next one's (the last to END); name
    each at its start, but for one too short to tell (START, usually)."""
    marks = [e for e in events if e.what in (*PHASE_COLOURS, "END")]
    whole = marks[-1].at - marks[0].at if marks else 0.0
    for e, nxt in itertools.pairwise(marks):
        if e.what not in PHASE_COLOURS:
            continue
        ax.axvspan(e.at, nxt.at, color=PHASE_COLOURS[e.what], zorder=0, lw=0)
        if label and (e.what != "START" or nxt.at - e.at > 0.05 * whole):
            ax.text(
                e.at,
                1.01,
                f"{e.what} ({e.at:.2f} s)",
                transform=ax.get_xaxis_transform(),
                ha="left",
                va="bottom",
                fontsize=9,
                color="#444444",
            )


def _faults(ax: Axes, events: Sequence[Event], label: bool) -> None:
    """A dashed line where a slave was lost, rejoined or came back late; on the top
    axes also a line of words for each, stacked from the bottom (under the curves)."""
    marked = [e for e in events if e.what in MARKS]
    for k, e in enumerate(marked):
        colour, word = MARKS[e.what]
        ax.axvline(e.at, color=colour, ls="--", lw=1.4, zorder=3)
        if label:
            ax.text(
                e.at,
                0.04 + 0.07 * k,
                f" {word} {_short(e.node)} at {e.at:.2f} s ",
                transform=ax.get_xaxis_transform(),
                ha="left",
                va="bottom",
                fontsize=8.5,
                color=colour,
                zorder=4,
                bbox={"facecolor": "white", "edgecolor": colour, "boxstyle": "round,pad=0.2"},
            )


def _rate(s: SlaveReport) -> tuple[list[float], list[float]]:
    """A slave's agreed messages per second over time (the growth over `RATE_SPAN`
    samples, at their middle)."""
    assert s.timeline is not None
    at, agreed = s.timeline.at, s.timeline.agreed
    xs, ys = [], []
    for k in range(len(at) - RATE_SPAN):
        dt = at[k + RATE_SPAN] - at[k]
        if dt > 0:
            xs.append((at[k] + at[k + RATE_SPAN]) / 2)
            ys.append((agreed[k + RATE_SPAN] - agreed[k]) / dt)
    return xs, ys


def draw_run(report: Report, path: str) -> None:
    """A picture of the run in *report*, written to *path* (its format by its suffix)."""
    _save(run_figure(report), path)


def run_figure(report: Report) -> Figure:
    """The picture of the run in *report* (see `draw_run`); close it when done
    (``matplotlib.pyplot.close``)."""
    _agg()
    import matplotlib.pyplot as plt

    fig, (top, low) = plt.subplots(
        2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    fig.suptitle(_title(report), fontsize=11)
    for ax in (top, low):
        _phases(ax, report.events, label=ax is top)
        _faults(ax, report.events, label=ax is top)
    drawn = [s for s in report.slaves if s.timeline is not None]
    top_rate = report.msgs_per_s
    for k, s in enumerate(drawn):
        assert s.timeline is not None
        note = " (rejoined)" if s.node in report.rejoined else ""
        label = f"{_short(s.node)}{note}: {s.count:,}"
        # the first widest: slaves that agree draw over each other, and all still show
        width = 1.2 + 2.5 * (len(drawn) - 1 - k) / max(len(drawn) - 1, 1)
        line = top.plot(s.timeline.at, s.timeline.agreed, lw=width, label=label)
        xs, ys = _rate(s)
        low.plot(xs, ys, lw=width * 0.7, color=line[0].get_color())
        if s.node not in report.rejoined:  # one that rejoined catches up: off the scale
            top_rate = max([top_rate, *ys])
    top.axhline(report.count, color="#555555", ls=":", lw=1)
    if drawn:
        columns = 1 + (len(drawn) - 1) // 8  # many slaves: the legend in columns
        top.legend(loc="upper left", fontsize=8, ncols=columns, title="slave: agreed")
    send = [e for e in report.events if e.what in ("SEND", "GRACE")]
    if len(send) == 2:
        low.hlines(report.msgs_per_s, send[0].at, send[1].at, color="black", ls="--", lw=1.2)
        low.text(
            send[1].at,
            report.msgs_per_s,
            f"{report.msgs_per_s:,.0f} msgs/s over SEND ",
            ha="right",
            va="bottom",
            fontsize=8.5,
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
        )
    missing = [_short(s.node) for s in report.slaves if s.timeline is None]
    if missing:
        why = "timeline not collected from " + ", ".join(missing)
        why += f"\n(an older cloudy on {'that slave' if len(missing) == 1 else 'those slaves'}"
        why += ": it does not sample)"
        top.text(
            0.5,
            0.5,
            why,
            transform=top.transAxes,
            ha="center",
            va="center",
            fontsize=11,
            bbox={"facecolor": "white", "edgecolor": "#c62828"},
        )
    top.set_ylabel("messages agreed\n(approved prefix)")
    top.yaxis.set_major_formatter(_thousands())
    low.set_ylabel("agreed msgs/s")
    low.yaxis.set_major_formatter(_thousands())
    low.set_xlabel("seconds since the run began (the master's clock)")
    top.set_ylim(0, None if drawn else max(report.count, 1) * 1.05)
    low.set_ylim(0, top_rate * 1.15 or 1.0)
    for ax in (top, low):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _compact(v: float) -> str:
    for size, unit in ((1e6, "M"), (1e3, "k")):
        if v >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.3g}"


def draw_scaling(rates: Mapping[str, Mapping[int, Sequence[float]]], path: str, title: str) -> None:
    """Each model's agreed rate (median, and the range of its runs) against the number
    of slaves: *rates[model][slaves]* are its runs' msgs/s (none: every run failed).
    Both axes are logarithmic (the models' rates lie orders of magnitude apart)."""
    _agg()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    counts = sorted({n for runs in rates.values() for n in runs})
    failed: list[str] = []
    for model, by_n in rates.items():
        xs = [n for n in counts if by_n.get(n)]
        runs = [sorted(by_n[n]) for n in xs]
        mid = [statistics.median(r) for r in runs]
        err = [
            [m - r[0] for m, r in zip(mid, runs, strict=True)],
            [r[-1] - m for m, r in zip(mid, runs, strict=True)],
        ]
        bars = ax.errorbar(xs, mid, yerr=err, marker="o", capsize=3, label=model)
        for x, y in zip(xs, mid, strict=True):
            ax.annotate(
                _compact(y),
                (x, y),
                xytext=(6, 4),
                textcoords="offset points",
                fontsize=8,
                color=bars.lines[0].get_color(),
            )
        failed += [f"{model} with {n}" for n in counts if n in by_n and not by_n[n]]
    if failed:
        title += "\nevery run failed: " + ", ".join(failed) + " slaves"
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xlabel("slaves")
    ax.set_ylabel("agreed msgs/s (median; bars: range of the runs)")
    ax.yaxis.set_major_formatter(_thousands())
    ax.margins(x=0.08)
    ax.grid(alpha=0.3, which="both")
    ax.legend(title="model")
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def picture(path: str | None, report: Report | None) -> None:
    """For the CLI: draw *report* to *path* if a picture was asked for, and say so on
    stderr; without a report (the master was killed), say why there is none."""
    if path is None:
        return
    if report is None:
        print(
            f"cloudy: no picture written to {path}: the master was killed, "
            "so nobody collected the run's timeline",
            file=sys.stderr,
        )
        return
    draw_run(report, path)
    print(f"cloudy: wrote a picture of the run to {path}", file=sys.stderr)
