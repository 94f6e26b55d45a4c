"""What a process is waiting in, told from its task's chain of awaits when asked.

Theory of operation
-------------------
Nothing is recorded while processes run: the functions a process can block in are
marked once, by their code objects (`waits_in`), and `waiting_in` walks the chain of
coroutines its task is suspended in (``cr_await``), from the outermost down, keeping
the innermost marked one. A process blocked in a receive is found in ``take``,
``expect`` or ``receive_all``; one waiting for a busy peer before it receives, in
``Process.attend`` below them, so "drain" wins there. A task whose awaited future is
done (or that yielded with ``sleep(0)``) is about to run: "ready"; the task running
now is "running"; blocked anywhere unmarked, "other".

The labels are the closed set `WAITING`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import CodeType
from typing import Any, TypeVar

__all__ = ["WAITING", "waiting_in", "waits_in"]

F = TypeVar("F", bound=Callable[..., Any])

#: What `waiting_in` may answer.
WAITING = frozenset(
    {"receive", "receive_chan", "call", "drain", "sleep", "other", "running", "ready"}
)

_marked: dict[CodeType, str] = {asyncio.sleep.__code__: "sleep"}


def waits_in(label: str) -> Callable[[F], F]:
    """Mark a coroutine function: a process suspended in it is waiting in *label*."""
    if label not in WAITING:
        raise ValueError(f"not a waiting label: {label!r}")

    def mark(fn: F) -> F:
        _marked[fn.__code__] = label
        return fn

    return mark


def waiting_in(task: asyncio.Task[Any] | None) -> str:
    """What the process running as *task* waits in (one of `WAITING`); on its loop only."""
    if task is None or task.done():
        return "ready"
    if task is asyncio.current_task():
        return "running"
    # asyncio's Task (also under uvloop) keeps the future it waits for; without it,
    # judge by the chain alone
    waiter: Any = getattr(task, "_fut_waiter", False)
    if waiter is None or (waiter is not False and waiter.done()):
        return "ready"
    label = "other"
    link: Any = task.get_coro()
    while link is not None:
        code = getattr(link, "cr_code", None) or getattr(link, "gi_code", None)
        if code is None:
            break  # a future's iterator: the end of the chain
        label = _marked.get(code, label)
        link = getattr(link, "cr_await", None) or getattr(link, "gi_yieldfrom", None)
    return label
