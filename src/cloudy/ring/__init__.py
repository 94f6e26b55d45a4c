"""The cloudy experiment: a ring of slaves broadcasting numbered random messages.

`run_experiment` (the master's side, run inside a process) takes the slave nodes
and returns a `Report` with every slave's result; `ring_slave` is the process the
default model spawns on each slave node; `m` and `expected_result` recompute a
run's numbers from its seed.
"""

from __future__ import annotations

from .master import ExperimentError, Params, Report, SlaveReport, run_experiment
from .model import MODELS, Model, get_model
from .random import m
from .result import RingResult, expected_result
from .slave import ring_slave

__all__ = [
    "MODELS",
    "ExperimentError",
    "Model",
    "Params",
    "Report",
    "RingResult",
    "SlaveReport",
    "expected_result",
    "get_model",
    "m",
    "ring_slave",
    "run_experiment",
]
