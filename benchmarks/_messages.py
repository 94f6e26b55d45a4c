"""Messages the benchmarks' processes exchange, in a module of their own: a message
class defined in a script's ``__main__`` is known only to that script (and
``_common`` must import without cloudy, to report a broken install)."""

from __future__ import annotations

from cloudy import Message


class Stop(Message):
    """Tells a benchmark's process to end."""
