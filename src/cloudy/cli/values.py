"""The ``cloudy`` command's value types: durations, counts, ports, seeds, peers, …

Each is an argparse ``type``: it returns the value or raises
`argparse.ArgumentTypeError` with one line that says what is wrong.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from ..backend import simplelocalnet as sl
from ..backend.dns import parse_server
from ..identity import NodeId
from .faults import parse_freeze
from .heart import Intensity, parse_intensity
from .plot import PlotError, check_path

__all__ = [
    "cookie",
    "count",
    "duration",
    "freeze",
    "intensity",
    "microseconds",
    "parse_duration",
    "peers",
    "plot_file",
    "port",
    "seed",
    "slaves",
    "whole",
]

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(us|µs|ms|s|m)?\s*$")
_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "m": 60.0}


def parse_duration(text: str) -> float:
    """Seconds from ``2s``, ``1500ms``, ``250us``, ``1m`` or plain seconds (``0.5``).

    Raises `ValueError` for anything else, negative values included.
    """
    found = _DURATION.match(text)
    if found is None:
        raise ValueError(
            f"not a duration: {text!r} (use e.g. 2s, 1500ms, or plain seconds; never negative)"
        )
    return float(found.group(1)) * _UNITS[found.group(2)]


def duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def microseconds(text: str) -> float:
    return whole(0, math.inf, "not a number of microseconds: ")(text) / 1e6


def seed(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer seed: {text!r}") from None


def whole(low: int, high: float, refusal: str) -> Callable[[str], int]:
    """An argument type: a whole number from *low* to *high*, else *refusal* with the text."""

    def whole(text: str) -> int:
        if not text.removeprefix("-").isdigit() and not refusal.startswith("not "):
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"{refusal}{text!r}")
        return int(text)

    return whole


count = whole(0, math.inf, "not a count (a whole number >= 0): ")
slaves = whole(1, math.inf, "the number of slaves must be at least 1, not ")
port = whole(0, 65535, "not a port number (0-65535): ")


def intensity(text: str) -> Intensity:
    try:
        return parse_intensity(text, parse_duration)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def freeze(text: str) -> tuple[float, float]:
    try:
        return parse_freeze(text, parse_duration)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def plot_file(text: str) -> str:
    try:
        return check_path(text)
    except PlotError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def peers(text: str) -> list[NodeId]:
    try:
        return sl.parse_peers(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def dns_name(text: str) -> str:
    name = text.strip().rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(0 < len(label) <= 63 for label in labels):
        raise argparse.ArgumentTypeError(f"not a DNS name: {text!r}")
    return name


def dns_server(text: str) -> str:
    try:
        parse_server(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def cookie(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("the cookie must not be empty")
    return text
