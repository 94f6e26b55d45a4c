"""Static closures: the only way to run code on another node.

A `RemoteTable` maps names to functions. A node runs, on a peer's request, only
functions in its table, found by name: nothing else can be executed remotely, and
no code ever crosses the wire. `@remotable` registers a module-level function in
the default table under its qualified name ``module.qualname``; `closure(fn, *args)`
names it with encodable arguments, ready for `spawn` or `call`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from .message import Message

__all__ = ["Closure", "RemoteTable", "closure", "default_remote_table", "remotable"]

F = TypeVar("F", bound=Callable[..., Any])


def qualified_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of *fn*: the name it is registered and called by."""
    return f"{fn.__module__}.{fn.__qualname__}"


class Closure(Message):
    """A registered function's name and the arguments to call it with."""

    name: str
    args: tuple[Any, ...] = ()

    def __repr__(self) -> str:
        return f"Closure({self.name}{self.args!r})"


class RemoteTable:
    """Names a node will run when a peer asks it to."""

    def __init__(self) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}

    def __repr__(self) -> str:
        return f"<RemoteTable {len(self._functions)} functions>"

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def register(self, fn: F, name: str | None = None) -> F:
        """Add *fn* under *name* (its qualified name by default); return *fn*."""
        self._functions[name or qualified_name(fn)] = fn
        return fn

    def lookup(self, name: str) -> Callable[..., Any] | None:
        """The function registered as *name*, or None."""
        return self._functions.get(name)


default_remote_table = RemoteTable()


def remotable(fn: F) -> F:
    """Decorator: register a module-level function in the default `RemoteTable`.

    One defined in a script run as ``python mine.py`` is registered as ``__main__.f``,
    a name no other program has: a warning says so (import it from a module instead).
    """
    if getattr(fn, "__module__", None) == "__main__":
        warnings.warn(
            f"@remotable {fn.__qualname__} is defined in __main__: only a node running "
            "this same script knows it by that name; others import it under its module's "
            "name and cannot run it (define it in a module every node imports)",
            stacklevel=2,
        )
    return default_remote_table.register(fn)


def closure(fn: Callable[..., Any] | str, *args: Any) -> Closure:
    """A `Closure` calling *fn* (a function or its registered name) with *args*."""
    name = fn if isinstance(fn, str) else qualified_name(fn)
    return Closure(name, args)
