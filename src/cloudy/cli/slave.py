"""``cloudy slave``: a slave node that tells the person who started it what happens to it.

One line each on stderr (none with ``--quiet``, which `cloudy local` gives its slaves:
then only results and errors)::

    cloudy: slave nid://host-a:10501:0 listening; found by multicast 224.0.0.99:9999 via host-a
    cloudy: slave nid://host-a:10501:0 taken by the master on nid://host-m:10500:0
    cloudy: slave nid://host-a:10501:0: the master on nid://host-m:10500:0 has gone; waiting …
    cloudy: slave nid://host-a:10501:0 ended by the master on nid://host-m:10500:0

and why it ends when no master ended it: told to stop (SIGTERM), interrupted (Ctrl-C),
or its parent has gone (its stdin closed, with ``--exit-with-stdin``). The node id is
the real one: with port 0 the line says which port it got. Results go to stdout.
"""

from __future__ import annotations

import contextlib
import os
import signal
from types import FrameType
from typing import Any

from ..aio import run
from ..backend import simplelocalnet as sl
from .local import exit_with_stdin

__all__ = ["run_slave_node"]


class _Teller:
    """Writes ``cloudy: LINE`` on stderr (one write: others may share it), unless quiet."""

    def __init__(self, quiet: bool, node: str) -> None:
        self.quiet = quiet
        self.node = node  # the node's id once it has one (its address until then)

    def __call__(self, line: str) -> None:
        if not self.quiet:
            with contextlib.suppress(OSError):
                os.write(2, f"cloudy: {line}\n".encode())  # (safe in a signal handler too)

    def ends(self, why: str) -> None:
        self(f"slave {self.node} ends: {why}")


def run_slave_node(
    host: str, port: int, options: dict[str, Any], *, quiet: bool, watch_stdin: bool
) -> int:
    """Run a slave node on *host*:*port* (backend *options*) until a master ends it; the
    exit status (130 after Ctrl-C; SIGTERM ends it by that signal)."""
    tell = _Teller(quiet, f"{host}:{port}")
    if watch_stdin:
        exit_with_stdin(lambda: tell.ends("its parent has gone (stdin closed)"))

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        tell.ends("told to stop (SIGTERM)")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        run(_serve(sl.initialize_backend(host, port, **options), tell))
    except KeyboardInterrupt:
        tell.ends("interrupted (Ctrl-C)")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


async def _serve(backend: sl.Backend, tell: _Teller) -> None:
    try:
        node = await backend.new_local_node()
    except BaseException:
        await backend.close()
        raise
    tell.node = str(node.node_id)
    tell(f"slave {node.node_id} listening; found by {backend.describe_discovery()}")
    await sl.run_slave(backend, tell=tell)
