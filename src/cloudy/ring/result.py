"""A slave's result: how many messages count, and the sum of ``i * m_i`` over them."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import msgspec

from .random import m

__all__ = ["PROGRESS_EVERY", "RingResult", "expected_result", "sum_in_order"]

# `expected_result` tells its caller how far it got every this many messages.
PROGRESS_EVERY = 1 << 16


class RingResult(msgspec.Struct, frozen=True):
    """COUNT and SUM, printed the way the experiment prints them: ``<COUNT, SUM>``."""

    count: int
    sum: float

    def __str__(self) -> str:
        return f"<{self.count}, {self.sum!r}>"


def sum_in_order(
    count: int, value: Callable[[int], float], *, start: int = 1, total: float = 0.0
) -> float:
    """``1*value(1) + 2*value(2) + ... + count*value(count)``, added left to right.

    The order is fixed so that every slave, holding the same values, gets the same float.
    With *start* and *total* it goes on from a partial sum: *total* holding the terms
    before *start*, the terms from *start* to *count* are added to it, in order.
    """
    for i in range(start, count + 1):
        total += i * value(i)
    return total


def expected_result(
    seed: int, count: int, progress: Callable[[int], None] | None = None
) -> RingResult:
    """What every slave of a run with *seed* that agreed on *count* messages must print.

    *progress*, if given, is called with the number of messages summed so far, every
    `PROGRESS_EVERY` of them and at the end (the sum is the same either way).
    """
    if count < 0:
        raise ValueError(f"COUNT must not be negative, not {count}")
    value, total = partial(m, seed), 0.0
    for start in range(1, count + 1, PROGRESS_EVERY):
        stop = min(start + PROGRESS_EVERY - 1, count)
        total = sum_in_order(stop, value, start=start, total=total)
        if progress is not None:
            progress(stop)
    return RingResult(count, total)
