"""How ``cloudy master`` and ``cloudy local`` print a run's end: the master's report
(a table of the slaves, the verdict, the rate; or JSON), or, when the master was
killed, what each slave printed."""

from __future__ import annotations

import json
from typing import TextIO

import msgspec

from ..ring.master import Params, Report
from .local import SlaveOutcome

__all__ = ["print_outcomes", "print_report", "print_table"]


def print_report(report: Report, json_output: bool, out: TextIO, table: bool = True) -> None:
    """The report: a table of the slaves (unless not *table* and they all agree, none
    lost or rejoined: `cloudy local`, whose screen shows each slave's own line), the
    verdict and the rate."""
    if json_output:
        print(json.dumps(msgspec.to_builtins(report)), file=out)
        return
    if table or not report.agree or report.lost or report.rejoined:
        print_table(report, out)
    n = len(report.slaves)
    if report.agree:
        print(f"all {n} slaves agree: <{report.count}, {report.sum!r}>", file=out)
    else:
        print(f"the {n} slaves DO NOT agree", file=out)
    print(
        f"{report.count} messages agreed in a {report.send_for:g} s send period: "
        f"{report.msgs_per_s:,.0f} msgs/s (seed {report.seed}, grace {report.wait_for:g} s, "
        f"model {report.model})",
        file=out,
    )


def print_table(report: Report, out: TextIO) -> None:
    width = max(len(s.node) for s in report.slaves)
    print(f"{'slave':{width}}  {'count':>8}  sum", file=out)
    for s in report.slaves:
        rejoined = s.node in report.rejoined
        note = "  (lost during the run; came back and rejoined)" if rejoined else ""
        print(f"{s.node:{width}}  {s.count:>8}  {s.sum!r}{note}", file=out)
    for node in report.lost:
        print(
            f"{node:{width}}  {'lost':>8}  (died during the run; the ring closed around it)",
            file=out,
        )


def print_outcomes(
    outcomes: list[SlaveOutcome], params: Params, json_output: bool, out: TextIO
) -> int:
    """What each slave printed after the master was killed; 0 if all results agree."""
    results = {o.result for o in outcomes if o.result is not None}
    printed = sum(o.result is not None for o in outcomes)
    agreed = results.pop() if len(results) == 1 else None
    if json_output:
        slaves = [
            {"node": str(o.node), "line": o.line}
            | ({} if o.result is None else {"count": o.result.count, "sum": o.result.sum})
            for o in outcomes
        ]
        summary = {"master": "killed", "agree": agreed is not None, "slaves": slaves}
        if agreed is not None:
            summary |= {"count": agreed.count, "sum": agreed.sum, "send_for": params.send_for}
        print(json.dumps(summary), file=out)
    else:
        print("the master was killed; what each slave printed:", file=out)
        for o in outcomes:
            print(o.line or f"{o.node} printed nothing", file=out)
        if agreed is not None:
            print(f"all {printed} slaves that printed a result agree: {agreed}", file=out)
            print(
                f"{agreed.count} messages agreed in a {params.send_for:g} s send period: "
                f"{agreed.count / params.send_for:,.0f} msgs/s (seed {params.seed}, grace "
                f"{params.wait_for:g} s, model {params.model}; finished without a master)",
                file=out,
            )
        elif printed:
            print(f"the {printed} slaves that printed a result DO NOT agree", file=out)
        else:
            print("no slave printed a result", file=out)
    return 0 if agreed is not None else 1
