"""What the simulator's parts need of each other, as protocols: a loop and an end of a
connection know the world and the network only by these, so that the parts import
one another in one direction (world -> net -> stream -> loop -> base)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Segments", "WorldView"]


class WorldView(Protocol):
    """The world as a loop and the network see it."""

    now: float
    rng: random.Random

    def record(self, kind: str, *fields: Any) -> None: ...

    def latency(self, src: str, dst: str) -> float: ...

    def at(self, when: float, fn: Callable[..., Any], *args: Any) -> None: ...

    def after(self, delay: float, fn: Callable[..., Any], *args: Any) -> None: ...

    def unhandled(self, loop: Any, context: dict[str, Any]) -> None: ...

    async def connect(
        self, loop: Any, factory: Callable[[], Any], host: str, port: int
    ) -> tuple[Any, Any]: ...

    def listen(self, loop: Any, factory: Callable[[], Any], host: str, port: int) -> Any: ...

    def multicast_join(
        self, loop: Any, group: str, port: int, interface: str, factory: Callable[[], Any]
    ) -> tuple[Any, Any]: ...

    def multicast_open(
        self, loop: Any, interface: str, factory: Callable[[], Any]
    ) -> tuple[Any, Any]: ...


class Segments(Protocol):
    """The network as one end of a connection sees it."""

    world: WorldView

    def send(self, end: Any, kind: str, payload: Any) -> None: ...
