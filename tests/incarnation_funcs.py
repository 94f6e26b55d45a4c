"""What tests/test_incarnation.py runs on its nodes in other OS processes (imported by
name there and here, so that the closures and message types match)."""

from __future__ import annotations

from typing import Any

from cloudy import Message, ProcessId, get_self_pid, match_any, receive_wait, remotable, send


class Heard(Message):
    """What an echo process sends back for every message it gets: who it is, and what."""

    by: ProcessId
    what: Any


@remotable
async def echo_to(reply_to: ProcessId) -> None:
    """Tell *reply_to* of every message this process gets (`Heard`), whatever it is."""
    me = get_self_pid()
    while True:
        msg = await receive_wait(match_any(lambda m: m))
        send(reply_to, Heard(me, msg))


@remotable
def send_here(pid: ProcessId, msg: Any) -> None:
    """Send *msg* to *pid* from a process of this node (a pid it was handed)."""
    send(pid, msg)
