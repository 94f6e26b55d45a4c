"""The connection handshake: protocol version check and mutual cookie proof.

Theory of operation
-------------------
Both ends run the same machine; only their *role* differs (the one that dialled
is the initiator). Each end first sends ``Hello(version, node, nonce)`` with a
fresh random nonce. On the peer's Hello it checks the version, then proves it
knows the cookie with ``Proof(HMAC(cookie, role, peer_nonce, own_nonce))``: bound
to the peer's fresh nonce, so a recorded Proof is useless on a new connection
(no replay), and to the sender's role, so a Proof cannot be reflected back. On
the peer's Proof it checks the HMAC the peer must have computed. When it has
both sent its Proof and checked the peer's, the handshake is `DONE`.

Any failure sends a ``Refuse`` saying why (so the other side can log a useful
line) and moves to `FAILED`; a Refuse received does the same. States::

    START --start()--> HELLO_SENT --peer Hello--> PROOF_SENT --peer Proof--> DONE
       any state --bad input / peer Refuse--> FAILED

Nothing here does I/O: `start` and `receive` return frames (with their length
prefix) for the caller to write.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from dataclasses import dataclass

import msgspec

from ..errors import LocalProtocolError
from ..identity import NodeId
from .framing import frame

__all__ = [
    "NONCE_BYTES",
    "PROTOCOL_VERSION",
    "Failure",
    "Handshake",
    "HandshakeState",
    "Outcome",
    "cookie_secret",
]

PROTOCOL_VERSION = 5
_MAGIC = "cloudy"
NONCE_BYTES = 32


class _Hello(msgspec.Struct, array_like=True, tag=0):
    magic: str
    version: int
    node: NodeId
    nonce: bytes


class _Proof(msgspec.Struct, array_like=True, tag=1):
    mac: bytes


class _Refuse(msgspec.Struct, array_like=True, tag=2):
    reason: str


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Hello | _Proof | _Refuse).decode


def cookie_secret(cookie: bytes) -> bytes:
    """The key every HMAC of ours uses for *cookie*.

    Hashed first: HMAC pads short keys with zeros, so b"k" and b"k\0" would otherwise
    be the same cookie.
    """
    return hashlib.sha256(b"cloudy-cookie|" + cookie).digest()


class HandshakeState(enum.Enum):
    START = "start"
    HELLO_SENT = "hello-sent"
    PROOF_SENT = "proof-sent"
    DONE = "done"
    FAILED = "failed"


class Failure(enum.Enum):
    """Why a handshake failed: the transport turns each kind into one exception type."""

    MALFORMED = "malformed"  # the peer does not speak cloudy's handshake
    VERSION = "version"  # it speaks another protocol version
    BAD_COOKIE = "bad-cookie"  # its proof does not match our cookie
    REFUSED_BY_PEER = "refused-by-peer"  # it refused us (our cookie or version)


@dataclass(frozen=True)
class Outcome:
    """What one `receive` produced: bytes to write, and why it failed if it did.

    ``error`` is a line for the log; ``failure`` is its kind, for the caller to act on.
    """

    data: bytes = b""
    error: str | None = None
    failure: Failure | None = None


class Handshake:
    """One end of the handshake of one connection."""

    def __init__(
        self, *, cookie: bytes, node: NodeId, initiator: bool, nonce: bytes | None = None
    ) -> None:
        self._cookie = cookie_secret(cookie)
        self._node = node
        self._initiator = initiator
        self._nonce = nonce if nonce is not None else os.urandom(NONCE_BYTES)
        self._peer_nonce: bytes | None = None
        self._peer_verified = False
        self.peer: NodeId | None = None
        self.state = HandshakeState.START

    def __repr__(self) -> str:
        role = "initiator" if self._initiator else "acceptor"
        return f"<Handshake {role} {self.state.value} peer={self.peer}>"

    def start(self) -> bytes:
        """The Hello frame to send first."""
        if self.state is not HandshakeState.START:
            raise LocalProtocolError(f"start() in state {self.state.value}")
        self.state = HandshakeState.HELLO_SENT
        return frame(_encode(_Hello(_MAGIC, PROTOCOL_VERSION, self._node, self._nonce)))

    def _mac(self, initiator: bool, theirs: bytes, ours: bytes) -> bytes:
        role = b"I" if initiator else b"A"
        return hmac.new(
            self._cookie, b"cloudy-auth|" + role + theirs + ours, hashlib.sha256
        ).digest()

    def _fail(self, failure: Failure, reason: str) -> Outcome:
        self.state = HandshakeState.FAILED
        return Outcome(data=frame(_encode(_Refuse(reason))), error=reason, failure=failure)

    def receive(self, body: bytes) -> Outcome:
        """Feed one frame body from the peer."""
        if self.state in (HandshakeState.DONE, HandshakeState.FAILED, HandshakeState.START):
            raise LocalProtocolError(f"receive() in state {self.state.value}")
        try:
            msg = _decode(body)
        except msgspec.DecodeError:
            return self._fail(
                Failure.MALFORMED,
                "handshake: the peer sent something that is not a cloudy handshake",
            )
        if isinstance(msg, _Refuse):
            self.state = HandshakeState.FAILED
            return Outcome(
                error=f"refused by peer: {msg.reason[:200] or 'no reason given'}",
                failure=Failure.REFUSED_BY_PEER,
            )
        if isinstance(msg, _Hello):
            return self._on_hello(msg)
        return self._on_proof(msg)

    def _on_hello(self, msg: _Hello) -> Outcome:
        if self.state is not HandshakeState.HELLO_SENT or msg.magic != _MAGIC:
            return self._fail(Failure.MALFORMED, "handshake: unexpected hello")
        if msg.version != PROTOCOL_VERSION:
            return self._fail(
                Failure.VERSION,
                f"protocol version mismatch: we speak {PROTOCOL_VERSION}, the peer {msg.version}",
            )
        if len(msg.nonce) != NONCE_BYTES:
            return self._fail(Failure.MALFORMED, "handshake: bad nonce")
        self._peer_nonce = msg.nonce
        self.peer = msg.node
        self.state = HandshakeState.PROOF_SENT
        mac = self._mac(self._initiator, msg.nonce, self._nonce)
        return Outcome(data=frame(_encode(_Proof(mac))))

    def _on_proof(self, msg: _Proof) -> Outcome:
        if self.state is not HandshakeState.PROOF_SENT or self._peer_nonce is None:
            return self._fail(Failure.MALFORMED, "handshake: proof before hello")
        expected = self._mac(not self._initiator, self._nonce, self._peer_nonce)
        if not hmac.compare_digest(expected, msg.mac):
            return self._fail(
                Failure.BAD_COOKIE, "authentication failed: the peer does not share our cookie"
            )
        self.state = HandshakeState.DONE
        return Outcome()
