"""The ``cloudy`` command: arguments, verify, and whole runs in separate OS processes."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from cloudy.cli import main, parse_duration
from cloudy.ring import expected_result

RESULT_LINE = re.compile(r"^(nid://\S+) <(\d+), (\S+)>$", re.M)
CLOUDY = [sys.executable, "-m", "cloudy.cli"]


# --- arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2s", 2.0), ("1500ms", 1.5), ("0.5", 0.5), ("3", 3.0), ("250us", 0.00025), ("1m", 60.0)],
)
def test_durations_accept_seconds_milliseconds_and_plain_numbers(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["-2s", "two", "", "2 parsecs", "1e", "--1"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "required"),
        (["bogus"], "invalid choice"),
        (["local", "--send-for", "-2s"], "not a duration"),
        (["local", "--wait-for=-1"], "not a duration"),
        (["local", "--send-for", "soon"], "not a duration"),
        (["local", "--send-for", "0"], "longer than zero"),
        (["local", "--slaves", "0"], "at least 1"),
        (["local", "--slaves", "-3"], "at least 1"),
        (["local", "--model", "bogus"], "invalid choice"),
        (["master", "127.0.0.1", "99999"], "not a port"),
        (["master", "127.0.0.1", "8000", "2000000", "-5", "0"], "microseconds"),
        (["master", "127.0.0.1", "8000", "2000000", "1000000", "zero"], "not an integer seed"),
        (["master", "127.0.0.1", "8000", "2000000", "--send-for", "1s"], "given twice"),
        (["verify", "--with-seed", "0", "many"], "not a count"),
        (["slave", "127.0.0.1"], "required"),
    ],
)
def test_bad_arguments_give_one_line_and_a_nonzero_exit(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("cloudy: ") and says in lines[0]


def test_bad_arguments_never_show_a_traceback_from_the_command_line() -> None:
    done = subprocess.run(
        [*CLOUDY, "local", "--send-for", "-2s"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_verify_prints_the_expected_count_and_sum(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--with-seed", "3", "1000"]) == 0
    assert capsys.readouterr().out == f"{expected_result(3, 1000)}\n"
    assert main(["verify", "2", "--with-seed", "0x10"]) == 0
    assert capsys.readouterr().out == f"{expected_result(16, 2)}\n"
