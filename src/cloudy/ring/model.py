"""Models: how the slaves generate and spread messages. The master is the same for all.

A model names the process the master spawns on every slave node and says how to
start it once every slave is in SEND. The slave process must speak the master's
side of `protocol` (`Setup`, `Phase`, `Poll`, `Agree`, `Members` in; `Hello`,
`Ready`, `PhaseAck`, `PollReply`, `Outcome` out); how slaves talk to each other is
the model's own.
"""

from __future__ import annotations

from typing import Protocol

from .. import Closure, ProcessId, closure, send
from .protocol import Kick, Setup
from .slave import ring_slave
from .stream import stream_slave

__all__ = ["MODELS", "Model", "PipelinedModel", "RingModel", "StreamModel", "get_model"]


class Model(Protocol):
    name: str
    description: str
    rejoins: bool  # whether a slave that comes back rejoins the run

    def slave_closure(self, master: ProcessId, position: int) -> Closure:
        """What the master spawns on each slave node (again, if one is lost)."""
        ...

    def tokens(self, asked: int) -> int:
        """How many tokens travel the ring, when the user asked for *asked*."""
        ...

    def kickstart(self, ring: list[ProcessId], setup: Setup) -> None:
        """Start generating (called in the master's process once all are in SEND)."""
        ...


class RingModel:
    """The seed's token ring: one message in flight, passed on by the left neighbour."""

    name = "ring"
    description = "token ring: one message in flight, each slave forwards its left neighbour's"
    rejoins = True

    def slave_closure(self, master: ProcessId, position: int) -> Closure:
        return closure(ring_slave, master, position)

    def tokens(self, asked: int) -> int:
        return 1

    def kickstart(self, ring: list[ProcessId], setup: Setup) -> None:
        # token c starts at slave c % n with index c + 1: spread around the ring, the
        # tokens keep every slave busy instead of travelling as one convoy
        for c in range(setup.tokens):
            send(ring[c % len(ring)], Kick(c))


class PipelinedModel(RingModel):
    """The token ring with *K* tokens travelling at once: token c hands out the indices
    i with (i - 1) % K == c, so every index is sent once and the agreed set is still
    a prefix; K messages are in flight, and a slave's turn handles several."""

    name = "pipelined"
    description = "K tokens travel the ring at once (--tokens, default 4)"

    def tokens(self, asked: int) -> int:
        return asked


class StreamModel:
    """Every slave generates all the time, its own share of the indices, many
    messages to a frame, at most --window messages ahead of its approvals."""

    name = "stream"
    description = "every slave streams its share of the indices (--window)"
    rejoins = False

    def slave_closure(self, master: ProcessId, position: int) -> Closure:
        return closure(stream_slave, master, position)

    def tokens(self, asked: int) -> int:
        return 1

    def kickstart(self, ring: list[ProcessId], setup: Setup) -> None:
        pass  # each slave starts when it enters SEND


MODELS: dict[str, Model] = {
    "ring": RingModel(),
    "pipelined": PipelinedModel(),
    "stream": StreamModel(),
}


def get_model(name: str) -> Model:
    """The model called *name*; raises `ValueError` naming the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ValueError(f"unknown model {name!r} (known: {known})") from None
