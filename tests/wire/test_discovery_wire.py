"""Discovery datagrams without sockets: signed, versioned, small, and refused when not ours."""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudy.wire import discovery as D

KEY = D.discovery_key(b"our cookie")
nonces = st.binary(min_size=D.NONCE_SIZE, max_size=D.NONCE_SIZE)
hosts = st.text(min_size=1, max_size=253)
ports = st.integers(1, 65535)
times = st.floats(allow_nan=False, allow_infinity=False)
seqs = st.integers(0, D.MAX_SEQ - 1)
tags = st.binary(min_size=D.TAG_SIZE, max_size=D.TAG_SIZE)
messages = st.one_of(
    st.builds(D.Who, nonces, times, seqs),
    st.builds(D.Here, nonces, hosts, ports),
    st.builds(D.Stranger, nonces, tags),
)


def kind_of(data: bytes, key: bytes = KEY) -> str:
    with pytest.raises(D.DatagramError) as refused:
        D.decode(key, data)
    return refused.value.kind


def signed(body: bytes, version: int = D.DISCOVERY_VERSION, key: bytes = KEY) -> bytes:
    """A datagram around *body*, signed properly: only its content can be wrong."""
    data = b"cldy" + bytes([version]) + body
    return data + hmac.digest(key, data, hashlib.sha256)


@given(messages)
def test_every_message_comes_back_equal_and_fits_in_a_datagram(msg: D.Message) -> None:
    data = D.encode(KEY, msg)
    assert len(data) <= D.MAX_DATAGRAM
    assert D.decode(KEY, data) == msg


@settings(max_examples=300)
@given(messages, st.data())
def test_any_changed_byte_is_refused(msg: D.Message, data: st.DataObject) -> None:
    datagram = bytearray(D.encode(KEY, msg))
    at = data.draw(st.integers(0, len(datagram) - 1))
    datagram[at] ^= data.draw(st.integers(1, 255))
    assert kind_of(bytes(datagram)) in {"foreign", "version", "cookie"}


@given(messages, st.data())
def test_a_cut_datagram_is_refused(msg: D.Message, data: st.DataObject) -> None:
    datagram = D.encode(KEY, msg)
    cut = data.draw(st.integers(0, len(datagram) - 1))
    assert kind_of(datagram[:cut]) in {"foreign", "cookie"}


@settings(max_examples=300)
@given(st.binary(max_size=D.MAX_DATAGRAM + 100))
def test_random_bytes_are_refused_before_they_are_read(data: bytes) -> None:
    assert kind_of(data) in {"foreign", "oversized", "version", "cookie"}


@given(st.binary(max_size=300))
def test_a_signed_body_that_is_not_a_message_is_undecodable(body: bytes) -> None:
    try:
        msg = D.decode(KEY, signed(body))
    except D.DatagramError as e:
        assert e.kind == "undecodable"
    else:  # the odd body that is one: then it is exactly that message
        assert D.encode(KEY, msg) == signed(body)


def test_another_cookie_is_refused_both_ways() -> None:
    theirs = D.discovery_key(b"their cookie")
    who = D.Who(os.urandom(D.NONCE_SIZE), time.time(), 0)
    assert kind_of(D.encode(theirs, who)) == "cookie"
    assert kind_of(D.encode(KEY, who), key=theirs) == "cookie"


def test_cookies_that_differ_by_a_trailing_zero_byte_are_different_cookies() -> None:
    # HMAC pads short keys with zeros: a cookie used as the key directly would make these one
    assert D.discovery_key(b"k") != D.discovery_key(b"k\0")
    who = D.encode(D.discovery_key(b"k"), D.Who(bytes(D.NONCE_SIZE), 0.0, 0))
    assert kind_of(who, key=D.discovery_key(b"k\0")) == "cookie"


def test_another_version_is_named_as_such_even_when_signed() -> None:
    body = msgspec.msgpack.encode(D.Who(bytes(D.NONCE_SIZE), 0.0, 0))
    assert kind_of(signed(body, version=D.DISCOVERY_VERSION + 1)) == "version"


def test_a_version_1_request_is_refused_as_another_version() -> None:
    # version 1's Who was [0, nonce]: a node of the previous release asking
    assert D.DISCOVERY_VERSION == 2
    body = msgspec.msgpack.encode([0, bytes(D.NONCE_SIZE)])
    assert kind_of(signed(body, version=1)) == "version"
    # and its body under our version, were it relabelled, is no request of ours
    assert kind_of(signed(body)) == "undecodable"


def test_an_oversized_datagram_is_refused_unread() -> None:
    here = D.Here(bytes(D.NONCE_SIZE), "x" * 2000, 80)
    assert kind_of(D.encode(KEY, here)) == "oversized"
    assert kind_of(b"\0" * (D.MAX_DATAGRAM + 1)) == "oversized"


@pytest.mark.parametrize(
    "msg",
    [
        D.Who(bytes(D.NONCE_SIZE - 1), 0.0, 0),
        D.Who(bytes(D.NONCE_SIZE + 1), 0.0, 0),
        D.Who(bytes(D.NONCE_SIZE), math.nan, 0),
        D.Who(bytes(D.NONCE_SIZE), math.inf, 0),
        D.Who(bytes(D.NONCE_SIZE), 0.0, -1),
        D.Who(bytes(D.NONCE_SIZE), 0.0, D.MAX_SEQ),
        D.Here(bytes(D.NONCE_SIZE), "", 80),
        D.Here(bytes(D.NONCE_SIZE), "host", 0),
        D.Here(bytes(D.NONCE_SIZE), "host", 65536),
        D.Here(bytes(D.NONCE_SIZE), "host", -1),
        D.Stranger(bytes(D.NONCE_SIZE), bytes(D.TAG_SIZE - 1)),
        D.Stranger(bytes(D.NONCE_SIZE - 1), bytes(D.TAG_SIZE)),
    ],
    ids=[
        "short nonce",
        "long nonce",
        "NaN time",
        "infinite time",
        "copy -1",
        "copy too large",
        "no host",
        "port 0",
        "port 65536",
        "port -1",
        "short tag",
        "stranger's short nonce",
    ],
)
def test_a_signed_message_with_bad_fields_is_undecodable(msg: D.Message) -> None:
    assert kind_of(D.encode(KEY, msg)) == "undecodable"


def test_a_signed_message_of_an_unknown_type_is_undecodable() -> None:
    assert kind_of(signed(msgspec.msgpack.encode([7, bytes(D.NONCE_SIZE)]))) == "undecodable"


# --- peeking at what a node with another cookie sent ---------------------------------------


@given(messages)
def test_peek_reads_a_message_signed_with_any_key(msg: D.Message) -> None:
    theirs = D.discovery_key(b"their cookie")
    assert D.peek(D.encode(theirs, msg)) == msg
    assert kind_of(D.encode(theirs, msg)) == "cookie"  # which decode refuses


def test_peek_finds_nothing_in_another_version_or_an_oversized_datagram() -> None:
    body = msgspec.msgpack.encode(D.Who(bytes(D.NONCE_SIZE), 0.0, 0))
    assert D.peek(signed(body)) is not None
    assert D.peek(signed(body, version=D.DISCOVERY_VERSION + 1)) is None
    assert D.peek(D.encode(KEY, D.Here(bytes(D.NONCE_SIZE), "x" * 2000, 80))) is None


def test_the_answer_to_a_stranger_is_no_larger_than_its_request() -> None:
    who = D.encode(KEY, D.Who(os.urandom(D.NONCE_SIZE), time.time(), 0))
    stranger = D.encode(KEY, D.Stranger(os.urandom(D.NONCE_SIZE), os.urandom(D.TAG_SIZE)))
    assert len(stranger) <= len(who)


# --- fresh and stale requests --------------------------------------------------------------


@given(nonces, st.floats(0, 2e9), seqs, st.floats(-D.MAX_SKEW, D.MAX_SKEW))
def test_a_request_within_the_skew_comes_back_and_is_fresh(
    nonce: bytes, sent_at: float, seq: int, age: float
) -> None:
    who = D.decode(KEY, D.encode(KEY, D.Who(nonce, sent_at, seq)))
    assert who == D.Who(nonce, sent_at, seq)
    assert isinstance(who, D.Who)
    D.check_fresh(who, sent_at + age)  # no error: within the skew either way


@given(nonces, st.floats(0, 2e9), seqs, st.floats(D.MAX_SKEW + 0.01, 1e9), st.booleans())
def test_a_request_older_or_newer_than_the_skew_is_stale(
    nonce: bytes, sent_at: float, seq: int, off: float, future: bool
) -> None:
    who = D.Who(nonce, sent_at, seq)
    now = sent_at - off if future else sent_at + off
    with pytest.raises(D.DatagramError) as refused:
        D.check_fresh(who, now)
    assert refused.value.kind == "stale"
    assert ("future" in str(refused.value)) == future


def test_copies_of_one_request_are_distinct_datagrams() -> None:
    nonce, now = os.urandom(D.NONCE_SIZE), time.time()
    copies = {D.encode(KEY, D.Who(nonce, now, seq)) for seq in range(10)}
    assert len(copies) == 10
