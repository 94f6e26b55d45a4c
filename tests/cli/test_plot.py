"""``--plot``: a picture of the run, and the timeline in the report it is drawn from.

The runs are ``cloudy local`` child processes, each with a discovery port of its own;
every process started with it is ended by its PID afterwards.
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib
import msgspec
import pytest
from procs import run_local

from cloudy import NodeId
from cloudy.cli.plot import draw_scaling, run_figure
from cloudy.ring import timeline as timeline_module
from cloudy.ring.master import Report, SlaveReport
from cloudy.ring.protocol import Outcome
from cloudy.ring.timeline import Event, Sampler, Timeline

matplotlib.use("Agg")
import matplotlib.image
import matplotlib.pyplot as plt
import matplotlib.text

CLOUDY = [sys.executable, "-m", "cloudy"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {2: "RGB", 6: "RGBA"}
SEND_GREEN = (0xD8, 0xF0, 0xD8)  # the SEND phase's shade (plot.PHASE_COLOURS)
LOST_RED = (0xC6, 0x28, 0x28)  # a lost slave's mark (plot.MARKS)


def png_header(path: Path) -> tuple[int, int, str]:
    """Width, height and colour mode from a PNG file's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, "not a PNG file"
    assert data[12:16] == b"IHDR"
    width, height, _depth, colour = struct.unpack(">IIBB", data[16:26])
    return width, height, COLOUR_TYPES.get(colour, f"colour type {colour}")


def has_colour(path: Path, rgb: tuple[int, int, int]) -> bool:
    """Whether some pixel of the picture is (within 2 of) colour *rgb*."""
    pixels = matplotlib.image.imread(str(path))  # RGBA floats 0..1
    want = [c / 255 for c in rgb]
    close = (abs(pixels[..., k] - want[k]) < 2.5 / 255 for k in range(3))
    found = next(close)
    for more in close:
        found = found & more
    return bool(found.any())


def events(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for e in report["events"]:
        found.setdefault(e["what"], []).append(e)
    return found


def test_plot_draws_the_run_and_the_report_holds_its_timeline(
    local: tuple[list[str], str], tmp_path: Path
) -> None:
    picture = tmp_path / "run.png"
    flags = ["--slaves", "2", "--send-for", "1s", "--wait-for", "0.5s", "--with-seed", "3"]
    done = run_local(*local, *flags, "--json", "--plot", str(picture))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"cloudy: wrote a picture of the run to {picture}" in done.stderr
    assert png_header(picture) == (1100, 700, "RGBA")
    assert matplotlib.image.imread(str(picture)).shape == (700, 1100, 4)
    assert has_colour(picture, SEND_GREEN), "no SEND phase drawn"
    assert not has_colour(picture, LOST_RED), "a slave marked lost in a run without faults"

    report = json.loads(done.stdout)
    phases = events(report)
    assert [e["what"] for e in report["events"]] == ["START", "SEND", "GRACE", "STOP", "END"]
    times = [e["at"] for e in report["events"]]
    assert times == sorted(times) and times[0] == 0.0
    send, grace = phases["SEND"][0]["at"], phases["GRACE"][0]["at"]
    # the send period, as the master waited it out (a loaded machine makes it late:
    # this bound only says the master did not wait for something else); the times are
    # rounded to the millisecond, so their difference may fall short of 1 s by a hair
    assert 1.0 - 1e-9 <= grace - send < 6.0
    assert len(report["slaves"]) == 2
    for slave in report["slaves"]:
        line = slave["timeline"]
        at, agreed = line["at"], line["agreed"]
        assert len(at) == len(agreed) >= 10  # every 50 ms over 1.5 s, even if late
        assert at == sorted(at) and at[0] <= send and at[-1] <= phases["END"][0]["at"]
        # the approved prefix grows during SEND; the last sample is the agreed count
        during = [a for t, a in zip(at, agreed, strict=True) if send < t < grace]
        assert during and 0 < max(during) <= slave["count"]
        assert agreed[:-1] == sorted(agreed[:-1])
        assert agreed[-1] == slave["count"] == report["count"]


@pytest.mark.load
def test_a_killed_slave_is_marked_lost_and_rejoined(
    local: tuple[list[str], str], tmp_path: Path
) -> None:
    picture = tmp_path / "faults.png"
    flags = ["--slaves", "4", "--send-for", "2s", "--wait-for", "1s", "--with-seed", "4"]
    flags += ["--kill-slave-at", "1s", "--fault-slave", "2"]
    done = run_local(*local, *flags, "--json", "--plot", str(picture))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    found = events(report)
    (lost,), (rejoined,) = found["lost"], found["rejoined"]
    victim = report["slaves"][2]["node"]  # in ring order: --fault-slave 2
    assert lost["node"] == rejoined["node"] == victim
    assert report["rejoined"] == [victim]
    # killed 1 s into SEND (noticed at once: its connections closed); back within it
    send = found["SEND"][0]["at"]
    assert send + 0.9 < lost["at"] < rejoined["at"] < found["STOP"][0]["at"]
    # the rejoined process's timeline starts at its Setup, sent when it came back
    (mine,) = [s["timeline"] for s in report["slaves"] if s["node"] == victim]
    assert lost["at"] < mine["at"][0] <= rejoined["at"]
    assert mine["agreed"][-1] == report["count"]
    assert png_header(picture) == (1100, 700, "RGBA")
    assert has_colour(picture, LOST_RED), "the loss is not marked"


@pytest.mark.parametrize("command", [["local"], ["master", "127.0.0.1", "0"]])
def test_plot_without_matplotlib_says_so_in_one_line_before_the_run(
    command: list[str], tmp_path: Path
) -> None:
    picture = tmp_path / "run.png"
    hide = "import sys; sys.modules['matplotlib'] = None; from cloudy.cli import main; "
    done = subprocess.run(
        [sys.executable, "-c", hide + "sys.exit(main())", *command, "--plot", str(picture)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stdout == ""  # no slave started, no run
    (line,) = done.stderr.splitlines()
    assert line.startswith("cloudy: ") and "install cloudy[plot]" in line
    assert not picture.exists()


def test_plot_refuses_a_file_it_cannot_write_before_the_run(tmp_path: Path) -> None:
    for name, words in [("run.txt", "not a picture file name"), ("no/run.png", "no such folder")]:
        done = subprocess.run(
            [*CLOUDY, "local", "--plot", str(tmp_path / name)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2 and done.stdout == ""
        (line,) = done.stderr.splitlines()
        assert words in line


def _report(timelines: list[Timeline | None]) -> Report:
    slaves = [
        SlaveReport(f"nid://127.0.0.1:{4000 + k}:0", 100, 1.5, timeline=t)
        for k, t in enumerate(timelines)
    ]
    phases = [Event(p, t) for p, t in [("START", 0), ("SEND", 0.1), ("GRACE", 1.1)]]
    phases += [Event("STOP", 1.6), Event("END", 1.7)]
    return Report(slaves, True, 100, 1.5, 1.0, 0.5, 0, 100.0, events=phases)


def _texts(report: Report) -> list[str]:
    """Every text on the picture of *report*."""
    fig = run_figure(report)
    try:
        return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    finally:
        plt.close(fig)


def test_a_slave_without_a_timeline_is_named_on_the_picture() -> None:
    line = Timeline([0.0, 0.5, 1.0, 1.6], [0, 40, 90, 100])
    texts = _texts(_report([line, None]))
    (note,) = [t for t in texts if "not collected" in t]
    assert note.startswith("timeline not collected from 127.0.0.1:4001\n") and "4000" not in note
    assert "127.0.0.1:4000: 100" in texts  # its legend: node and agreed count
    assert any("all 2 agree on 100 messages: 100 msgs/s in the send period" in t for t in texts)
    assert not [t for t in _texts(_report([line, line])) if "not collected" in t]


def test_an_older_slaves_outcome_decodes_without_a_timeline() -> None:
    class OldOutcome(msgspec.Struct, array_like=True, tag=Outcome.__struct_config__.tag):
        position: int
        node: NodeId
        count: int
        sum: float
        cpu_s: float
        ahead: int = 0

    node = NodeId("127.0.0.1", 4000)
    old = msgspec.msgpack.encode(OldOutcome(1, node, 5, 2.5, 0.1, 3))
    decoded = msgspec.msgpack.decode(old, type=Outcome)
    assert (decoded.count, decoded.ahead, decoded.timeline) == (5, 3, None)


async def test_the_sampler_samples_on_a_timer_and_stays_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(timeline_module, "MAX_SAMPLES", 8)
    count = [0]
    sampler = Sampler(lambda: count[0], every=0.002)
    for _ in range(30):
        count[0] += 1
        await asyncio.sleep(0.004)
    line = sampler.stop(final=99)
    taken = len(line.at)
    assert len(line.at) <= 9 and sampler.every > 0.002  # thinned, the interval doubled
    assert line.at == sorted(line.at) and line.agreed[-1] == 99
    assert line.agreed[:-1] == sorted(line.agreed[:-1]) and line.agreed[0] == 0
    await asyncio.sleep(0.02)
    assert len(line.at) == taken  # stopped: no more samples


def test_draw_scaling_writes_a_png(tmp_path: Path) -> None:
    picture = tmp_path / "scaling.png"
    rates = {"ring": {1: [2e5, 1.8e5], 2: [2e4]}, "stream": {1: [2e6], 2: []}}
    draw_scaling(rates, str(picture), "rates")
    assert png_header(picture) == (900, 550, "RGBA")
