"""A node for the ``cloudy ps`` / ``cloudy top`` tests (its ``setup`` is run by
`cloudy.testing.NodeProcess`): one registered process parked with three messages it
will never take, and one that sends itself a message and takes it every `TICK` s."""

from __future__ import annotations

import asyncio

from cloudy import Message, expect, get_self_pid, register, send, spawn_local

PARKED = "parked"
TICKER = "ticker"
LEFT_IN_MAILBOX = 3
TICK = 0.02


class Parked(Message):
    n: int


class Wake(Message):
    pass


class Tick(Message):
    pass


async def ticker() -> None:
    me = get_self_pid()
    register(TICKER, me)
    while True:
        send(me, Tick())
        await expect(Tick)
        await asyncio.sleep(TICK)


async def setup() -> None:
    spawn_local(ticker)
    me = get_self_pid()
    register(PARKED, me)
    for n in range(LEFT_IN_MAILBOX):
        send(me, Parked(n))
    await expect(Wake)  # never sent: the three Parked stay in the mailbox
