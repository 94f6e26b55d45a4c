"""The values a ring slave holds, by index: 9 bytes an index, not a dict of floats.

Indices arrive nearly in order (a token ring hands them out one after another), so
one array of floats addressed by index, and a byte per index saying whether it is
held, store them compactly; the arrays grow by doubling.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

__all__ = ["Values"]


class Values:
    """A mapping index (>= 1) -> value, for the indices held, in two flat arrays."""

    __slots__ = ("held", "vals")

    def __init__(self) -> None:
        self.vals = array("d")  # by index - 1
        self.held = bytearray()  # 1 where the index is held

    def __setitem__(self, index: int, value: float) -> None:
        j = index - 1
        size = len(self.held)
        if j >= size:
            grow = max(j + 1, 2 * size, 1024) - size
            self.vals.frombytes(bytes(8 * grow))
            self.held.extend(bytes(grow))
        self.vals[j] = value
        self.held[j] = 1

    def __getitem__(self, index: int) -> float:
        j = index - 1
        if 0 <= j < len(self.held) and self.held[j]:
            return self.vals[j]
        raise KeyError(index)

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int):
            return False
        j = index - 1
        return 0 <= j < len(self.held) and self.held[j] == 1

    def get(self, index: int) -> float | None:
        j = index - 1
        if 0 <= j < len(self.held) and self.held[j]:
            return self.vals[j]
        return None

    def setdefault(self, index: int, value: float) -> float:
        if index not in self:
            self[index] = value
        return self[index]

    def __iter__(self) -> Iterator[int]:
        """The indices held, in order."""
        held = self.held
        return (j + 1 for j in range(len(held)) if held[j])

    def items(self) -> Iterator[tuple[int, float]]:
        vals = self.vals
        return ((i, vals[i - 1]) for i in self)

    def __len__(self) -> int:
        return self.held.count(1)
