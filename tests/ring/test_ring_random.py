"""The experiment's random numbers and the result anyone can recompute from COUNT and seed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudy.ring.random import m, splitmix64
from cloudy.ring.result import RingResult, expected_result


def reference_splitmix64(seed: int, count: int) -> list[int]:
    """SplitMix64 as usually written: a state stepped by the golden gamma, then mixed."""
    state = seed % 2**64
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) % 2**64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
        out.append(z ^ (z >> 31))
    return out


def test_first_outputs_for_seed_zero_are_the_published_ones() -> None:
    assert [hex(splitmix64(0, i)) for i in (1, 2, 3)] == [
        "0xe220a8397b1dcdaf",
        "0x6e789e6aa1b965f4",
        "0x6c45d188009454f",
    ]


@given(st.integers(min_value=-(2**70), max_value=2**70), st.integers(1, 50))
def test_the_ith_output_is_the_ith_step_of_the_generator(seed: int, i: int) -> None:
    assert splitmix64(seed, i) == reference_splitmix64(seed, i)[-1]


@given(st.integers(min_value=0, max_value=2**64 - 1), st.integers(1, 10**9))
def test_values_lie_in_zero_exclusive_one_inclusive(seed: int, i: int) -> None:
    value = m(seed, i)
    assert 0.0 < value <= 1.0
    assert value == ((splitmix64(seed, i) >> 11) + 1) / 2**53


def test_the_seed_is_taken_modulo_two_to_the_64() -> None:
    assert m(-1, 5) == m(2**64 - 1, 5)
    assert m(2**64 + 7, 3) == m(7, 3)


def test_indices_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        m(0, 0)


def test_expected_result_sums_i_times_m_i_left_to_right() -> None:
    total = 0.0
    for i in range(1, 101):
        total += i * m(42, i)
    assert expected_result(42, 100) == RingResult(100, total)
    assert expected_result(42, 0) == RingResult(0, 0.0)
    assert str(RingResult(3, 1.5)) == "<3, 1.5>"


def test_different_seeds_give_different_sums() -> None:
    assert expected_result(0, 1000).sum != expected_result(1, 1000).sum
