"""The msgspec codec that carries messages across the wire.

Theory of operation
-------------------
A *message* is either plain data (None, bool, int, float, str, bytes, and tuples,
lists and dicts of messages) or an instance of a registered Struct: a subclass of
`Message`, or one of the identity types (see `cloudy.message`, which owns the
registry; this module only keeps caches derived from it, dropped when it changes).

Fields with a declared type (``n: int``, ``pid: ProcessId``) are encoded natively
by msgspec, which is fast. Positions typed ``Any``/``object`` — and a message sent
as plain data — carry values whose type the receiver cannot know from a schema, so
they are *walked*: a tuple becomes msgpack extension 1, a registered Struct becomes
extension 2 holding its own encoding (its tag first). The decoder's ``ext_hook``
turns them back, so a pid nested in a tuple in a dict arrives as a `ProcessId` in a
tuple in a dict. Nothing else is ever decoded: there is no pickle here.

An unknown tag or an undecodable extension does not raise from inside the decoder
(that would lose the whole batch it came in); it decodes to an `Undecodable`
marker that the node drops with a log line naming the peer and the cause.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Callable
from typing import Any, cast

import msgspec

from .. import message
from ..errors import EncodeError

log = logging.getLogger("cloudy.codec")

__all__ = [
    "EXT_STRUCT",
    "EXT_TUPLE",
    "Undecodable",
    "counter",
    "decode_term",
    "encode_term",
    "ext_hook",
    "find_undecodable",
    "to_wire",
]

EXT_TUPLE = 1
EXT_STRUCT = 2

_SCALARS = frozenset({type(None), bool, int, float, str, bytes})

# Derived from the message registry, and dropped whenever it changes:
# classes whose fields must be walked before encoding, with the walk per field
_walkers: dict[type[msgspec.Struct], tuple[tuple[str, Callable[[Any], Any]], ...]] = {}
# registered Struct types with nothing to walk: `to_wire` encodes them straight away
_flat_structs: set[type] = set()
# the decoder for every registered Struct (built on first use)
_struct_decoder: msgspec.msgpack.Decoder[Any] | None = None


def _registry_changed() -> None:
    global _struct_decoder
    _walkers.clear()
    _flat_structs.clear()
    _struct_decoder = None


message.on_change(_registry_changed)


class Undecodable(msgspec.Struct, frozen=True):
    """Stands in for a value the decoder could not rebuild (unknown type, bad bytes)."""

    cause: str


# --- encoding --------------------------------------------------------------------


def _needs_walk(tp: Any) -> bool:
    if tp is Any or tp is object:
        return True
    origin = typing.get_origin(tp)
    if origin is None:
        return False
    return any(_needs_walk(a) for a in typing.get_args(tp) if a is not Ellipsis)


def _container_walker(tp: Any) -> Callable[[Any], Any]:
    """A function that walks a value of declared type *tp*, keeping its declared shape."""
    if tp is Any or tp is object:
        return to_wire
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    if origin in (list, tuple, set, frozenset) or origin is typing.Union:
        return _walk_shallow
    if origin is dict and len(args) == 2:
        value_walk = _container_walker(args[1])
        return lambda d: {k: value_walk(v) for k, v in d.items()}
    return _walk_shallow


def _walk_shallow(v: Any) -> Any:
    # a container (or union member) of a declared type: walk its elements as Any
    if isinstance(v, list | tuple | set | frozenset):
        return [to_wire(x) for x in v]
    if isinstance(v, dict):
        return {k: to_wire(x) for k, x in v.items()}
    return to_wire(v) if not isinstance(v, msgspec.Struct) else _prepare(v)


def _walkers_for(cls: type[msgspec.Struct]) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    walkers = _walkers.get(cls)
    if walkers is None:
        hints = typing.get_type_hints(cls)
        found: list[tuple[str, Callable[[Any], Any]]] = []
        for field in cls.__struct_fields__:
            tp = hints.get(field, Any)
            if _needs_walk(tp):
                found.append((field, _container_walker(tp)))
            elif isinstance(tp, type) and issubclass(tp, msgspec.Struct) and _walkers_for(tp):
                found.append((field, _prepare))
        walkers = tuple(found)
        _walkers[cls] = walkers
    return walkers


def _prepare(s: Any) -> Any:
    """Return *s* with its Any-typed fields walked (itself when there are none)."""
    walkers = _walkers_for(type(s))
    if not walkers:
        return s
    return msgspec.structs.replace(s, **{f: w(getattr(s, f)) for f, w in walkers})


_encoder = msgspec.msgpack.Encoder()
_encode = _encoder.encode


def to_wire(v: Any) -> Any:
    """Turn a message into a value msgspec encodes so that `decode_term` rebuilds it.

    Raises `EncodeError` for values that are neither plain data nor registered types.
    """
    t = type(v)
    if t in _flat_structs:  # the hot path: a registered message with no Any fields
        return msgspec.msgpack.Ext(EXT_STRUCT, _encode(v))
    if t in _SCALARS:
        return v
    if t is list:
        return [to_wire(x) for x in v]
    if t is tuple:
        return msgspec.msgpack.Ext(EXT_TUPLE, _encode([to_wire(x) for x in v]))
    if t is dict:
        return {k: to_wire(x) for k, x in v.items()}
    if isinstance(v, msgspec.Struct):
        tag = t.__struct_config__.tag
        if not isinstance(tag, str) or message.lookup(tag) is not t:
            raise EncodeError(f"{t.__qualname__} is not a registered message type")
        if not _walkers_for(t) and t.__struct_config__.frozen:
            _flat_structs.add(t)
        return msgspec.msgpack.Ext(EXT_STRUCT, _encode(_prepare(v)))
    raise EncodeError(
        f"cannot send a {t.__qualname__}: only plain data and Message subclasses cross the wire"
    )


def encode_term(v: Any) -> bytes:
    """Encode one message to bytes (see `to_wire`)."""
    try:
        return _encode(to_wire(v))
    except (TypeError, OverflowError) as e:
        raise EncodeError(str(e)) from e


# --- decoding --------------------------------------------------------------------


def _decoder_for_structs() -> msgspec.msgpack.Decoder[Any]:
    global _struct_decoder
    types = message.registered()
    try:
        decoder = _union_decoder(types)
    except Exception:  # a type msgspec cannot use: leave it out, keep the others
        decoder = _union_decoder(tuple(t for t in types if _usable(t)))
    _struct_decoder = decoder
    return decoder


def _union_decoder(types: tuple[type, ...]) -> msgspec.msgpack.Decoder[Any]:
    union = typing.Union[types]  # type: ignore[valid-type]  # noqa: UP007
    return msgspec.msgpack.Decoder(union, ext_hook=ext_hook)


def _usable(t: type) -> bool:
    try:
        msgspec.msgpack.Decoder(t)
    except Exception as e:
        log.error("message type %s cannot be decoded and is left out: %r", t.__qualname__, e)
        return False
    return True


class _Counter:
    """How many `Undecodable` stand-ins `ext_hook` has made: read it before and after a
    decode to learn, at no cost per message, whether something inside failed."""

    undecodable = 0


counter = _Counter()


def find_undecodable(value: Any) -> Undecodable | None:
    """The first `Undecodable` anywhere inside *value*, or None (walks containers)."""
    t = type(value)
    if t is Undecodable:
        return cast(Undecodable, value)
    if t is list or t is tuple:
        items: Any = value
    elif t is dict:
        items = [*value.keys(), *value.values()]
    elif isinstance(value, msgspec.Struct):
        items = [getattr(value, f) for f in value.__struct_fields__]
    else:
        return None
    for item in items:
        found = find_undecodable(item)
        if found is not None:
            return found
    return None


def ext_hook(code: int, data: memoryview) -> Any:
    """Rebuild a tuple or a registered Struct; never raises (see `Undecodable`)."""
    try:
        if code == EXT_STRUCT:
            decoder = _struct_decoder or _decoder_for_structs()
            return decoder.decode(data)
        if code == EXT_TUPLE:
            return tuple(_any_decoder.decode(data))
        error = f"unknown extension {code}"
    except msgspec.ValidationError as e:
        error = f"unknown or malformed message: {e}"
    except msgspec.DecodeError as e:
        error = f"undecodable bytes: {e}"
    except Exception as e:  # never let one message take the connection down
        error = f"cannot decode: {e!r}"
    counter.undecodable += 1
    return Undecodable(error)


_any_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(ext_hook=ext_hook)


def decode_term(data: bytes | memoryview) -> Any:
    """Decode bytes made by `encode_term`. Raises `msgspec.DecodeError` on bad bytes."""
    return _any_decoder.decode(data)
