"""The experiment's random numbers: ``m(seed, i)``, the i-th output of SplitMix64.

SplitMix64's state after *i* steps is ``seed + i * GAMMA (mod 2**64)``, so any
output can be computed directly from the seed and the index, in O(1): a sender
computes the value it broadcasts, and anyone can recompute a run's SUM from its
COUNT and seed (`cloudy verify`).
"""

from __future__ import annotations

__all__ = ["GAMMA", "m", "splitmix64"]

MASK = (1 << 64) - 1
GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_SCALE = 2.0**-53


def splitmix64(seed: int, i: int) -> int:
    """The i-th 64-bit output (i >= 1) of SplitMix64 seeded with ``seed mod 2**64``."""
    z = (seed + i * GAMMA) & MASK
    z = ((z ^ (z >> 30)) * _MIX1) & MASK
    z = ((z ^ (z >> 27)) * _MIX2) & MASK
    return z ^ (z >> 31)


def m(seed: int, i: int) -> float:
    """The i-th random number of the run with *seed*, in (0, 1]: ``((z >> 11) + 1) / 2**53``.

    Raises `ValueError` for ``i < 1``.
    """
    if i < 1:
        raise ValueError(f"message indices start at 1, not {i}")
    z = (seed + i * GAMMA) & MASK
    z = ((z ^ (z >> 30)) * _MIX1) & MASK
    z = ((z ^ (z >> 27)) * _MIX2) & MASK
    return (((z ^ (z >> 31)) >> 11) + 1) * _SCALE
