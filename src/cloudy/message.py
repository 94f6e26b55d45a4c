"""`Message`, the base class of every message type, and the registry of those types.

Ownership rule: this file owns the table of tag -> class for every Struct that may
travel inside an ``Any`` position. Whoever keeps something derived from that table
(the codec's decoder and per-class caches) subscribes with `on_change` and is told
when it changes; nobody else writes the table.
"""

from __future__ import annotations

import typing
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from .identity import MonitorRef, NodeId, ProcessId, SendPort

__all__ = ["Message", "lookup", "on_change", "register_type", "registered"]

# tag -> class
_registry: dict[str, type[msgspec.Struct]] = {}
_listeners: list[Callable[[], None]] = []


def register_type(cls: type[msgspec.Struct]) -> None:
    """Make *cls* (a Struct with a string tag) decodable inside ``Any`` positions.

    A second class under the same tag (a module reloaded, a class defined inside a
    function twice) replaces the first, as a plain name would.
    """
    tag = cls.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__qualname__} needs a string tag to be registered")
    _registry[tag] = cls
    for listener in _listeners:
        listener()


def lookup(tag: str) -> type[msgspec.Struct] | None:
    """The class registered under *tag*, or None."""
    return _registry.get(tag)


def registered() -> tuple[type[msgspec.Struct], ...]:
    """Every registered class, in registration order."""
    return tuple(_registry.values())


def on_change(listener: Callable[[], None]) -> None:
    """Call *listener* (no arguments) after every change to the registry."""
    _listeners.append(listener)


class _MessageMeta(msgspec.StructMeta):
    """Gives every `Message` subclass its qualified name as tag, and registers it."""

    def __new__(
        mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any], **kwargs: Any
    ) -> _MessageMeta:
        is_root = kwargs.pop("_root", False)
        # Set here rather than in class keywords so that type checkers do not ask
        # every user subclass to repeat frozen=True.
        kwargs.setdefault("frozen", True)
        kwargs.setdefault("array_like", True)
        if not is_root:
            kwargs.setdefault("tag", f"{ns['__module__']}.{ns['__qualname__']}")
            if ns["__module__"] == "__main__":
                warnings.warn(
                    f"Message {ns['__qualname__']} is defined in __main__: only a node "
                    "running this same script can decode it; others know it by its "
                    "module's name (define it in a module every node imports)",
                    stacklevel=2,
                )
        cls = super().__new__(mcls, name, bases, ns, **kwargs)
        if not is_root:
            register_type(typing.cast(type[msgspec.Struct], cls))
        return cls


class Message(msgspec.Struct, metaclass=_MessageMeta, _root=True):
    """Base class of user message types: an immutable, typed record.

    ``class Ping(Message): reply_to: ProcessId`` declares a message that can be sent
    to any process, local or remote. Fields may hold plain data, other messages and
    identifiers, also inside ``Any``-typed fields and containers.
    """

    __cloudy_message__: ClassVar[bool] = True


for _cls in (NodeId, ProcessId, MonitorRef, SendPort):
    register_type(_cls)
