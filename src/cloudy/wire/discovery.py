"""Discovery datagrams: "who's there?" and "here I am", signed with the cookie.

Sans-IO: `encode` gives the bytes of a datagram, `decode` checks and parses one.
A datagram is ``MAGIC | version | body | HMAC-SHA256(key, MAGIC | version | body)``
where the body is a msgpack-encoded `Who`, `Here` or `Stranger` and the key is derived from
the cluster's cookie, so that nodes with another cookie never see each other.

A node that hears a `Who` signed with another key (a node with another cookie asks)
answers with a `Stranger`, *unsigned* (`encode_unsigned`: its MAC is zeros): signed,
it would let whoever asked test guesses of our cookie offline. `peek` reads it
unchecked, so that ``cloudy doctor`` can count the nodes with a different cookie that
answered its request (their number only: what a datagram that fails authentication
says is never trusted, nor used for anything else — anyone could forge one).

A `Who` carries a fresh random nonce, the sender's wall-clock time and the number
of the copy (a request is resent, each copy numbered); a `Here` answers one nonce
with the answering node's address, so a requester counts only the answers to its
own request, and a recorded answer is worth nothing to a later request. A `Who`
sent more than `MAX_SKEW` seconds before or after the receiver's clock says is
stale (`check_fresh`): a recorded request is worth nothing for long either.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from typing import Final

import msgspec

from .handshake import cookie_secret

__all__ = [
    "DISCOVERY_VERSION",
    "MAX_DATAGRAM",
    "MAX_SKEW",
    "NONCE_SIZE",
    "TAG_SIZE",
    "DatagramError",
    "Here",
    "Message",
    "Stranger",
    "Who",
    "check_fresh",
    "decode",
    "discovery_key",
    "encode",
    "peek",
]

MAGIC: Final = b"cldy"
# 2: a Who carries its send time and copy number (version 1 had the nonce only)
DISCOVERY_VERSION: Final = 2
NONCE_SIZE: Final = 16
TAG_SIZE: Final = 8
# A request sent longer ago than this (by the sender's clock), or as far in the future,
# is stale: this much clock skew between hosts is tolerated, no more.
MAX_SKEW: Final = 30.0
# Copies of one request are numbered below this.
MAX_SEQ: Final = 2**32
# Far above any datagram we send (about 100 bytes); anything larger is refused unread.
MAX_DATAGRAM: Final = 1024
_MAC_SIZE: Final = 32
_HEADER: Final = MAGIC + bytes([DISCOVERY_VERSION])


class Who(msgspec.Struct, frozen=True, array_like=True, tag=0):
    """A request: every node that hears it answers *nonce* with a `Here`.

    *sent_at* is the sender's wall clock (`time.time()`) when this copy was sent, and
    *seq* numbers the copies of one request (the same *nonce*) from 0.
    """

    nonce: bytes
    sent_at: float
    seq: int


class Here(msgspec.Struct, frozen=True, array_like=True, tag=1):
    """An answer to the request *nonce*: a node listens on TCP at *host*:*port*."""

    nonce: bytes
    host: str
    port: int


class Stranger(msgspec.Struct, frozen=True, array_like=True, tag=2):
    """An answer to a request *nonce* signed with another key: "a node with another
    cookie is here". *tag* is a random value of the answering daemon (not its address),
    so that an asker can count how many different nodes answered."""

    nonce: bytes
    tag: bytes


Message = Who | Here | Stranger

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Message)


class DatagramError(Exception):
    """A datagram that is not a valid one of ours; *kind* names why, for counting."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def discovery_key(cookie: bytes) -> bytes:
    """The HMAC key for datagrams: derived from the cookie, distinct from the handshake's."""
    return hmac.digest(cookie_secret(cookie), b"cloudy discovery v1", hashlib.sha256)


def encode(key: bytes, msg: Message) -> bytes:
    """The signed datagram carrying *msg*."""
    signed = _HEADER + _encoder.encode(msg)
    return signed + hmac.digest(key, signed, hashlib.sha256)


def encode_unsigned(msg: Message) -> bytes:
    """The datagram carrying *msg* with a MAC of zeros (a `Stranger`: nothing of our key
    in it, so it tells nothing of our cookie)."""
    return _HEADER + _encoder.encode(msg) + bytes(_MAC_SIZE)


def decode(key: bytes, data: bytes) -> Message:
    """The message in *data*; raises `DatagramError` for anything not signed with *key*."""
    _check_header(data)
    signed, mac = data[:-_MAC_SIZE], data[-_MAC_SIZE:]
    if not hmac.compare_digest(mac, hmac.digest(key, signed, hashlib.sha256)):
        raise DatagramError("cookie", "signed with another cookie")
    return _parse(signed)


def peek(data: bytes) -> Message | None:
    """The message in *data* WITHOUT checking who signed it, or None if it is none of ours.

    For counting what nodes with another cookie send (a `Who` to answer with a
    `Stranger`, a `Stranger` answering ours): anybody could have sent it, so nothing it
    says may be trusted or acted on beyond that.
    """
    try:
        _check_header(data)
        return _parse(data[:-_MAC_SIZE])
    except DatagramError:
        return None


def _check_header(data: bytes) -> None:
    if len(data) > MAX_DATAGRAM:
        raise DatagramError("oversized", f"{len(data)} bytes (at most {MAX_DATAGRAM})")
    if len(data) < len(_HEADER) + _MAC_SIZE or not data.startswith(MAGIC):
        raise DatagramError("foreign", "not a cloudy discovery datagram")
    if data[len(MAGIC)] != DISCOVERY_VERSION:
        raise DatagramError(
            "version",
            f"discovery version {data[len(MAGIC)]}, we speak {DISCOVERY_VERSION}",
        )


def _parse(signed: bytes) -> Message:
    try:
        msg: Message = _decoder.decode(signed[len(_HEADER) :])
    except msgspec.DecodeError as e:  # signed by us but unreadable: another release?
        raise DatagramError("undecodable", str(e)) from None
    if len(msg.nonce) != NONCE_SIZE:
        raise DatagramError("undecodable", f"nonce of {len(msg.nonce)} bytes")
    if isinstance(msg, Who) and not (math.isfinite(msg.sent_at) and 0 <= msg.seq < MAX_SEQ):
        raise DatagramError("undecodable", f"sent at {msg.sent_at}, copy {msg.seq}")
    if isinstance(msg, Here) and not (0 < msg.port < 65536 and msg.host):
        raise DatagramError("undecodable", f"bad address {msg.host!r}:{msg.port}")
    if isinstance(msg, Stranger) and len(msg.tag) != TAG_SIZE:
        raise DatagramError("undecodable", f"tag of {len(msg.tag)} bytes")
    return msg


def check_fresh(who: Who, now: float, skew: float = MAX_SKEW) -> None:
    """Raises `DatagramError` ("stale") unless *who* was sent within *skew* s of *now*.

    *now* is the receiver's wall clock (`time.time()`); a request from further in the
    past (a replay, or one that travelled for ages) or the future (a clock far off) is
    refused, so a recorded request can be replayed for a minute at most.
    """
    age = now - who.sent_at
    if age > skew:
        raise DatagramError("stale", f"sent {age:.1f} s ago (at most {skew:g} s)")
    if age < -skew:
        raise DatagramError("stale", f"sent {-age:.1f} s in the future (at most {skew:g} s)")
