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
R2 = TypeVar("R2")
R3 = TypeVar("R3")


def _itself(msg: Any) -> Any:
    """The handler a clause has when none is given: the receive yields the message."""
    return msg


# The overloads let mypy see through an async handler: its clause yields what the
# coroutine returns (a bare ``R | Awaitable[R]`` infers ``Never`` for it).
@overload
def match(tp: type[T]) -> Match[T]: ...
@overload
def match(tp: type[T], handler: Callable[[T], Awaitable[R]]) -> Match[R]: ...
@overload
def match(tp: type[T], handler: Callable[[T], R]) -> Match[R]: ...
def match(tp: type[T], handler: Callable[[T], Any] = _itself) -> Match[Any]:
    """A clause taking the first message of type *tp* and passing it to *handler*
    (none: the receive yields the message itself)."""
    return Match(tp, None, handler)


@overload
def match_if(tp: type[T], predicate: Callable[[T], bool]) -> Match[T]: ...
@overload
def match_if(
    tp: type[T], predicate: Callable[[T], bool], handler: Callable[[T], Awaitable[R]]
) -> Match[R]: ...
@overload
def match_if(
    tp: type[T], predicate: Callable[[T], bool], handler: Callable[[T], R]
) -> Match[R]: ...
def match_if(
    tp: type[T], predicate: Callable[[T], bool], handler: Callable[[T], Any] = _itself
) -> Match[Any]:
    """A clause taking the first message of type *tp* for which *predicate* holds
    (no *handler*: the receive yields the message itself)."""
    return Match(tp, predicate, handler)


@overload
def match_any() -> Match[Any]: ...
@overload
def match_any(handler: Callable[[Any], Awaitable[R]]) -> Match[R]: ...
@overload
def match_any(handler: Callable[[Any], R]) -> Match[R]: ...
def match_any(handler: Callable[[Any], Any] = _itself) -> Match[Any]:
    """A clause taking any message (no *handler*: the receive yields it itself)."""
    return Match(None, None, handler)


async def _run_handler(clause: Match[R], msg: Any) -> R:
    result = clause.handler(msg)
    if inspect.isawaitable(result):
        return await result
    return result


# Overloads for two and three clauses give a union of their results (each clause's
# type is inferred on its own; one signature over all of them would join them).
@overload
async def receive_wait(c1: Match[R], /) -> R: ...
@overload
async def receive_wait(c1: Match[R], c2: Match[R2], /) -> R | R2: ...
@overload
async def receive_wait(c1: Match[R], c2: Match[R2], c3: Match[R3], /) -> R | R2 | R3: ...
@overload
async def receive_wait(*clauses: Match[Any]) -> Any: ...
async def receive_wait(*clauses: Match[Any]) -> Any:
    """Wait for the first message, in arrival order, that some clause accepts.

    Clauses are tried in the order given; the message taken is passed to that
    clause's handler (sync or async) and its result returned. Every message no
    clause accepts stays in the mailbox where it was.
    """
    # no clauses: wait forever (until an exit signal), as Cloud Haskell's `receiveWait []`
    taken = await take(current_process(), clauses, None)
    assert taken is not None  # no deadline
    return await _run_handler(taken[1], taken[0])


@overload
async def receive_timeout(seconds: float, c1: Match[R], /) -> R | None: ...
@overload
async def receive_timeout(seconds: float, c1: Match[R], c2: Match[R2], /) -> R | R2 | None: ...
@overload
async def receive_timeout(
    seconds: float, c1: Match[R], c2: Match[R2], c3: Match[R3], /
) -> R | R2 | R3 | None: ...
@overload
async def receive_timeout(seconds: float, *clauses: Match[Any]) -> Any: ...
async def receive_timeout(seconds: float, *clauses: Match[Any]) -> Any:
    """`receive_wait` that gives up after *seconds* and returns None (0 polls)."""
    taken = await take(current_process(), clauses, seconds)
    if taken is None:
        return None
    return await _run_handler(taken[1], taken[0])


async def expect_timeout(seconds: float, tp: type[T]) -> T | None:
    """`expect` that gives up after *seconds* and returns None."""
    taken = await take(current_process(), (Match(tp, None, _itself),), seconds)
    return None if taken is None else cast(T, taken[0])
