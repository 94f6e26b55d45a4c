"""Selective receive: the clauses (`match`, `match_if`, `match_any`) and the receives
that take them (`receive_wait`, `receive_timeout`), with `expect_timeout`.

A receive looks through the calling process's mailbox in arrival order and takes
the first message some clause accepts; every other message stays where it was.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast, overload

from .node import Match, current_process, take

__all__ = [
    "expect_timeout",
    "match",
    "match_any",
    "match_if",
    "receive_timeout",
    "receive_wait",
]

T = TypeVar("T")
R = TypeVar("R")


# The overloads let mypy see through an async handler: its clause yields what the
# coroutine returns (a bare ``R | Awaitable[R]`` infers ``Never`` for it).
@overload
def match(tp: type[T], handler: Callable[[T], Awaitable[R]]) -> Match[R]: ...
@overload
def match(tp: type[T], handler: Callable[[T], R]) -> Match[R]: ...
def match(tp: type[T], handler: Callable[[T], Any]) -> Match[Any]:
    """A clause taking the first message of type *tp* and passing it to *handler*."""
    return Match(tp, None, handler)


@overload
def match_if(
    tp: type[T], predicate: Callable[[T], bool], handler: Callable[[T], Awaitable[R]]
) -> Match[R]: ...
@overload
def match_if(
    tp: type[T], predicate: Callable[[T], bool], handler: Callable[[T], R]
) -> Match[R]: ...
def match_if(
    tp: type[T], predicate: Callable[[T], bool], handler: Callable[[T], Any]
) -> Match[Any]:
    """A clause taking the first message of type *tp* for which *predicate* holds."""
    return Match(tp, predicate, handler)


@overload
def match_any(handler: Callable[[Any], Awaitable[R]]) -> Match[R]: ...
@overload
def match_any(handler: Callable[[Any], R]) -> Match[R]: ...
def match_any(handler: Callable[[Any], Any]) -> Match[Any]:
    """A clause taking any message."""
    return Match(None, None, handler)


async def _run_handler(clause: Match[R], msg: Any) -> R:
    result = clause.handler(msg)
    if inspect.isawaitable(result):
        return await result
    return result


async def receive_wait(*clauses: Match[R]) -> R:
    """Wait for the first message, in arrival order, that some clause accepts.

    Clauses are tried in the order given; the message taken is passed to that
    clause's handler (sync or async) and its result returned. Every message no
    clause accepts stays in the mailbox where it was.
    """
    # no clauses: wait forever (until an exit signal), as Cloud Haskell's `receiveWait []`
    taken = await take(current_process(), clauses, None)
    assert taken is not None  # no deadline
    return await _run_handler(taken[1], taken[0])


async def receive_timeout(seconds: float, *clauses: Match[R]) -> R | None:
    """`receive_wait` that gives up after *seconds* and returns None (0 polls)."""
    taken = await take(current_process(), clauses, seconds)
    if taken is None:
        return None
    return await _run_handler(taken[1], taken[0])


async def expect_timeout(seconds: float, tp: type[T]) -> T | None:
    """`expect` that gives up after *seconds* and returns None."""
    taken = await take(current_process(), (Match(tp, None, _identity),), seconds)
    return None if taken is None else cast(T, taken[0])


def _identity(x: Any) -> Any:
    return x
