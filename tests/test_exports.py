"""The public surface: every name in ``cloudy.__all__`` exists, and nothing else leaks."""

import cloudy


def test_every_exported_name_exists() -> None:
    missing = [name for name in cloudy.__all__ if not hasattr(cloudy, name)]
    assert missing == []


def test_exports_are_sorted_and_unique() -> None:
    assert sorted(set(cloudy.__all__)) == sorted(cloudy.__all__)


def test_public_callables_have_docstrings() -> None:
    undocumented = [
        name
        for name in cloudy.__all__
        if callable(getattr(cloudy, name)) and not (getattr(cloudy, name).__doc__ or "").strip()
    ]
    assert undocumented == []
