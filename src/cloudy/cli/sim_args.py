"""The arguments of ``cloudy sim`` (what they mean: `cloudy.cli.sim`)."""

from __future__ import annotations

import argparse
import math

from ..ring.model import MODELS
from . import values as v

SIM_MODELS = tuple(MODELS)  # (as ring.simulated's, without loading the simulator)

__all__ = ["DEFAULT_FIRST", "DEFAULT_SEEDS", "add_sim_arguments"]

DEFAULT_SEEDS = 200
DEFAULT_FIRST = 1


def add_sim_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``cloudy sim``'s arguments to *p*."""
    p.add_argument(
        "--model",
        default="all",
        choices=(*SIM_MODELS, "all"),
        help="how the slaves run the ring (all: the models taken in turn)",
    )
    p.add_argument(
        "--nodes", type=v.slaves, default=4, metavar="N", help="slaves (besides the master)"
    )
    p.add_argument(
        "--seeds",
        type=v.whole(1, math.inf, "the number of seeds must be at least 1, not "),
        metavar="N",
        help=f"how many schedules, one a seed (default: {DEFAULT_SEEDS})",
    )
    p.add_argument(
        "--first", type=v.seed, metavar="S", help=f"the first seed (default: {DEFAULT_FIRST})"
    )
    p.add_argument(
        "--seed",
        type=v.seed,
        metavar="S",
        help="run this one schedule (with --model all: the one the sweep from --first runs)",
    )
    p.add_argument(
        "--faults",
        metavar="PLAN",
        help="this fault plan for every schedule, e.g. 'crash:s2@0.3 cut:s1/s3@0.2+1' "
        "(default: one drawn from each seed)",
    )
    p.add_argument("--no-faults", action="store_true", help="no faults at all")
    p.add_argument(
        "--send-for",
        type=v.duration,
        metavar="TIME",
        help="send period, virtual (default: the model's own, a few hundred messages)",
    )
    p.add_argument(
        "--wait-for", type=v.duration, metavar="TIME", help="grace period, virtual (default: 0.2s)"
    )
    p.add_argument(
        "--discover",
        action="store_true",
        help="every master finds its slaves by multicast (default: every other "
        "schedule of each model in a sweep, none with --seed)",
    )
    p.add_argument(
        "--workers",
        type=v.count,
        metavar="N",
        help="worker processes (default: one per CPU; 0: in this process)",
    )
    p.add_argument(
        "--rerun-every",
        type=v.count,
        default=100,
        metavar="N",
        help="run every N-th schedule again and compare digests (0: none)",
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="with --seed: what happened, in virtual-time order, and what the nodes printed",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
