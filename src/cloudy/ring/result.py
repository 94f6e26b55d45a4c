"""A slave's result: how many messages count, and the sum of ``i * m_i`` over them."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from .random import m

__all__ = ["RingResult", "expected_result", "sum_in_order"]


class RingResult(msgspec.Struct, frozen=True):
    """COUNT and SUM, printed the way the experiment prints them: ``<COUNT, SUM>``."""

    count: int
    sum: float

    def __str__(self) -> str:
        return f"<{self.count}, {self.sum!r}>"


def sum_in_order(count: int, value: Callable[[int], float]) -> float:
    """``1*value(1) + 2*value(2) + ... + count*value(count)``, added left to right.

    The order is fixed so that every slave, holding the same values, gets the same float.
    """
    total = 0.0
    for i in range(1, count + 1):
        total += i * value(i)
    return total


def expected_result(seed: int, count: int) -> RingResult:
    """What every slave of a run with *seed* that agreed on *count* messages must print."""
    if count < 0:
        raise ValueError(f"COUNT must not be negative, not {count}")
    return RingResult(count, sum_in_order(count, lambda i: m(seed, i)))
