"""Mailboxes that grow long: seen, slowed at the source, and limited where asked.

Theory of operation
-------------------
Mailboxes are unbounded, as in Erlang: a message is never dropped because a
receiver is slow. But a long mailbox is never silent, and never lets a remote
sender fill this node's memory:

* a mailbox that passes ``warn_at`` messages is logged once, with the process,
  its names and the length; the warning re-arms when it falls below half;
* a connection that delivers into a mailbox holding ``pause_at`` messages or more
  is no longer read until that mailbox is below half of it. TCP then fills up,
  the sending node's buffer passes its high-water mark, and the process sending
  there is suspended (see ``outbox``): backpressure from the slow receiver back to
  the fast sender, with nothing lost. While a connection is paused its silence is
  ours, so the heartbeat does not judge it; other processes fed by the same
  connection wait too (their messages are behind the paused bytes);
* a process may set a limit on its own mailbox (`set_limit`), with a policy for a
  message over it: ``drop_newest`` (dropped, logged once per crossing) or ``kill``
  (the process ends with that reason).

Ownership rule: the mailbox part of a process's `Attention` (warned, paused,
dropped, limited) is written only here; a process without a long mailbox or a
limit has none, and costs nothing. The checks run at the process's next receive.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Literal

from ..transport.tcp import Connection
from .mailbox import Attention, Killed, Process

__all__ = ["DEFAULT_PAUSE_AT", "DEFAULT_WARN_AT", "BoundedMailbox", "MailboxFlow", "Policy"]

log = logging.getLogger("cloudy.mailbox")

# Messages waiting in one mailbox at which the connections feeding it stop being read.
DEFAULT_PAUSE_AT = 100_000
# ... and at which it is logged (once per crossing).
DEFAULT_WARN_AT = 100_000

Policy = Literal["drop_newest", "kill"]


class BoundedMailbox(deque[Any]):
    """A mailbox with a limit: what comes over it is dropped, or ends the process."""

    def __init__(self, proc: Process, items: Any, limit: int, policy: Policy) -> None:
        super().__init__(items)
        self.proc = proc
        self.limit = limit
        self.policy = policy

    def append(self, msg: Any) -> None:
        if len(self) < self.limit:
            super().append(msg)
            return
        proc = self.proc
        watch = proc.attention
        if self.policy == "kill":
            proc.signal(Killed(f"mailbox limit of {self.limit} messages exceeded"))
        elif watch is not None:
            if not watch.dropped:
                log.warning(
                    "process %s: mailbox full (%d messages): dropping what comes over it",
                    proc.pid,
                    self.limit,
                )
            watch.dropped += 1


class MailboxFlow:
    """The thresholds of one node, applied to its processes' mailboxes."""

    def __init__(self, *, warn_at: int = DEFAULT_WARN_AT, pause_at: int = DEFAULT_PAUSE_AT) -> None:
        self.warn_at = warn_at
        self.pause_at = pause_at

    def delivered(self, proc: Process, conn: Connection | None) -> None:
        """After delivering to *proc* (from *conn*, if remote): warn, pause *conn*."""
        mb = proc.mailbox
        n = len(mb) if mb is not None else 0
        if n < self.warn_at and n < self.pause_at:
            return
        watch = self._attention(proc)
        if n >= self.warn_at and not watch.warned:
            watch.warned = True
            log.warning("process %s has %d messages waiting in its mailbox", proc.pid, n)
        if conn is not None and n >= self.pause_at and conn not in watch.paused:
            conn.pause_reading()
            watch.paused.append(conn)

    def taken(self, proc: Process) -> None:
        """When *proc* receives: resume what it paused, re-arm its warning."""
        watch = proc.attention
        if watch is None:
            return
        mb = proc.mailbox
        n = len(mb) if mb is not None else 0
        if watch.paused and n < self.pause_at // 2:
            paused, watch.paused = watch.paused, []
            for conn in paused:
                conn.resume_reading()
        if watch.warned and n < self.warn_at // 2:
            watch.warned = False
            log.info("process %s is down to %d messages waiting", proc.pid, n)
        if watch.dropped and n < getattr(mb, "limit", 0):
            log.warning(
                "process %s: %d messages dropped over its mailbox limit", proc.pid, watch.dropped
            )
            watch.dropped = 0

    def ended(self, proc: Process) -> None:
        """*proc* ended: every connection it paused is read again."""
        watch = proc.attention
        if watch is not None:
            for conn in watch.paused:
                conn.resume_reading()
            watch.paused = []

    def set_limit(self, proc: Process, limit: int | None, policy: Policy) -> None:
        """Limit *proc*'s mailbox to *limit* messages (None: no limit)."""
        if limit is not None and limit < 1:
            raise ValueError(f"a mailbox limit must be at least 1, not {limit}")
        items = proc.mailbox or ()
        self._attention(proc).limited = limit is not None
        if limit is None:
            proc.mailbox = deque(items)
        else:
            proc.mailbox = BoundedMailbox(proc, items, limit, policy)

    def _attention(self, proc: Process) -> Attention:
        attention = proc.attention
        if attention is None:  # seen to from its next receive on, until idle again
            attention = proc.need_attention()
        attention.taken = self.taken
        return attention
