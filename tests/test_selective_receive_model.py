"""Selective receive against a reference model (hypothesis).

Any interleaving of sends and receives, with any clauses: what each receive takes,
and what is left in the mailbox at the end, equal a plain list model: the first
message in arrival order that some clause accepts, clauses tried in order for
that message; everything else stays where it was.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cloudy import (
    LocalNode,
    Match,
    Message,
    get_self_pid,
    match,
    match_any,
    match_if,
    receive_timeout,
    receive_wait,
    send,
)


class A(Message):
    n: int


class B(Message):
    n: int


TYPES: dict[str, type] = {"A": A, "B": B, "int": int, "str": str}

messages = st.one_of(
    st.builds(A, st.integers(0, 4)),
    st.builds(B, st.integers(0, 4)),
    st.integers(0, 4),
    st.sampled_from(["x", "y"]),
)


@dataclass(frozen=True)
class Clause:
    kind: str  # "match", "match_if" or "any"
    type_name: str = "int"
    at_least: int = 0

    def accepts(self, msg: Any) -> bool:
        if self.kind == "any":
            return True
        if not isinstance(msg, TYPES[self.type_name]):
            return False
        return self.kind == "match" or _size(msg) >= self.at_least

    def build(self, index: int) -> Match[tuple[int, Any]]:
        def handler(msg: Any) -> tuple[int, Any]:
            return index, msg

        if self.kind == "any":
            return match_any(handler)
        tp = TYPES[self.type_name]
        if self.kind == "match":
            return match(tp, handler)
        return match_if(tp, lambda m: _size(m) >= self.at_least, handler)


def _size(msg: Any) -> int:
    if isinstance(msg, A | B):
        return msg.n
    if isinstance(msg, int):
        return msg
    return len(msg)


clauses = st.lists(
    st.one_of(
        st.builds(Clause, st.just("match"), st.sampled_from(sorted(TYPES))),
        st.builds(Clause, st.just("match_if"), st.sampled_from(sorted(TYPES)), st.integers(0, 5)),
        st.builds(Clause, st.just("any")),
    ),
    min_size=1,
    max_size=3,
)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), messages),
        st.tuples(st.just("receive"), clauses),
    ),
    max_size=25,
)


def model(ops: list[tuple[str, Any]]) -> tuple[list[Any], list[Any]]:
    """What each receive returns, and what is left, per the reference model."""
    mailbox: list[Any] = []
    taken: list[Any] = []
    for op, arg in ops:
        if op == "send":
            mailbox.append(arg)
            continue
        result = None
        for i, msg in enumerate(mailbox):
            chosen = next((ci for ci, c in enumerate(arg) if c.accepts(msg)), None)
            if chosen is not None:
                del mailbox[i]
                result = (chosen, msg)
                break
        taken.append(result)
    return taken, mailbox


async def real(ops: list[tuple[str, Any]]) -> tuple[list[Any], list[Any]]:
    expected, _ = model(ops)

    async def main() -> tuple[list[Any], list[Any]]:
        me = get_self_pid()
        taken: list[Any] = []
        receives = 0
        for op, arg in ops:
            if op == "send":
                send(me, arg)
                continue
            built = [c.build(i) for i, c in enumerate(arg)]
            if expected[receives] is not None and receives % 2 == 0:
                # something matches: the blocking receive must find it without waiting
                taken.append(await receive_wait(*built))
            else:
                taken.append(await receive_timeout(0, *built))
            receives += 1
        left = []
        while (rest := await receive_timeout(0, match_any(lambda m: m))) is not None:
            left.append(rest)
        return taken, left

    async with LocalNode("127.0.0.1", 0, cookie="model", logger=False) as node:
        result: tuple[list[Any], list[Any]] = await asyncio.wait_for(node.run_process(main), 10)
        return result


@settings(max_examples=200, deadline=None)
@given(operations)
def test_selective_receive_takes_and_leaves_what_the_model_does(
    ops: list[tuple[str, Any]],
) -> None:
    assert asyncio.run(real(ops)) == model(ops)


@settings(max_examples=50, deadline=None)
@given(st.lists(messages, max_size=20), clauses)
def test_a_receive_that_matches_nothing_leaves_the_mailbox_as_it_was(
    sent: list[Any], cls: list[Clause]
) -> None:
    assume(not any(c.accepts(m) for m in sent for c in cls))
    ops: list[tuple[str, Any]] = [*(("send", m) for m in sent), ("receive", cls)]
    assert asyncio.run(real(ops)) == ([None], sent)
