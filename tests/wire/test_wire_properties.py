"""Properties of the sans-IO wire layer: framing, handshake, codec, protocol items."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudy import Message, MonitorRef, NodeId, ProcessId, SendPort
from cloudy.errors import ProtocolError
from cloudy.messages import (
    DiedDisconnect,
    DiedException,
    DiedNormal,
    ProcessMonitorNotification,
    WhereIsReply,
)
from cloudy.wire import handshake as H
from cloudy.wire import protocol as P
from cloudy.wire.codec import Undecodable, decode_term, encode_term, to_wire
from cloudy.wire.framing import HEADER, TICK, DamagedFrame, FrameDecoder, frame

# --- framing ---------------------------------------------------------------------------

bodies = st.lists(st.binary(min_size=1, max_size=300), max_size=20)


@st.composite
def stream_and_splits(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    frames = draw(bodies)
    data = b"".join(frame(b) for b in frames)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=30)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return frames, chunks


@settings(max_examples=300)
@given(stream_and_splits())
def test_any_split_of_a_stream_decodes_to_the_same_frames(
    case: tuple[list[bytes], list[bytes]],
) -> None:
    frames, chunks = case
    decoder = FrameDecoder()
    out: list[bytes] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    assert out == frames
    assert decoder.buffered == 0


@given(bodies.filter(bool), st.data())
def test_a_truncated_stream_yields_only_the_whole_frames_and_waits_for_the_rest(
    frames: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(frame(b) for b in frames)
    cut = data.draw(st.integers(0, len(stream) - 1))
    decoder = FrameDecoder()
    got = decoder.feed(stream[:cut])
    assert got == frames[: len(got)] and len(got) < len(frames)
    assert got + decoder.feed(stream[cut:]) == frames


@given(st.integers(1025, 2**32 - 1), st.binary(max_size=50))
def test_a_frame_over_the_limit_is_an_error_before_it_is_buffered(size: int, rest: bytes) -> None:
    with pytest.raises(ProtocolError, match="exceeds the limit of 1024"):
        FrameDecoder(max_frame=1024).feed(size.to_bytes(4, "big") + rest)


@settings(max_examples=500)
@given(bodies.filter(bool), st.data())
def test_a_flipped_bit_anywhere_is_never_delivered_nor_waited_on(
    frames: list[bytes], data: st.DataObject
) -> None:
    """CRC-32 finds every single-bit error, in a body, in its checksum or in the
    length: the frames before the damaged one may come out, the damaged one never
    does, and the decoder says so at once (a damaged length never makes it wait for
    bytes that will not come)."""
    stream = bytearray(b"".join(frame(b) for b in frames))
    hit = data.draw(st.integers(0, len(frames) - 1))
    start = sum(HEADER + len(b) for b in frames[:hit])
    at = data.draw(st.integers(start, start + HEADER + len(frames[hit]) - 1))
    stream[at] ^= 1 << data.draw(st.integers(0, 7))
    decoder = FrameDecoder(max_frame=2**32 - 1)  # (so that no length is refused as too long)
    got: list[bytes] = []
    with pytest.raises(DamagedFrame, match="damaged in transit"):
        for i in range(0, len(stream), 7):  # in small pieces, as a socket may give them
            got += decoder.feed(bytes(stream[i : i + 7]))
    assert got == frames[: len(got)] and len(got) <= hit


@given(st.binary(min_size=1, max_size=300), st.integers(0, 8 * HEADER - 1))
def test_a_tick_is_a_frame_of_nothing_and_a_damaged_one_is_damage(body: bytes, bit: int) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(TICK + frame(body) + TICK) == [body] and decoder.ticks == 2
    assert frame(b"") == TICK
    damaged = bytearray(TICK)
    damaged[bit // 8] ^= 1 << bit % 8
    decoder.max_frame = 2**32 - 1
    with pytest.raises(DamagedFrame, match="header was damaged"):
        decoder.feed(bytes(damaged))


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_random_bytes_give_frames_or_a_protocol_error_never_anything_else(data: bytes) -> None:
    try:
        FrameDecoder(max_frame=4096).feed(data)
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(st.binary(max_size=500))
def test_random_frame_bodies_fail_to_decode_cleanly(body: bytes) -> None:
    try:
        items = P.decode_items(body)
    except msgspec.DecodeError:  # ValidationError is one too
        return
    assert isinstance(items, list)


# --- handshake -------------------------------------------------------------------------


def run_handshake(a: H.Handshake, b: H.Handshake) -> None:
    """Shuttle frames between two ends until neither has anything to say."""
    to_b, to_a = [a.start()], [b.start()]
    while to_a or to_b:
        for data, end, back in ((to_b, b, to_a), (to_a, a, to_b)):
            while data:
                for body in FrameDecoder().feed(data.pop(0)):
                    if end.state in (H.HandshakeState.DONE, H.HandshakeState.FAILED):
                        continue
                    out = end.receive(body)
                    if out.data:
                        back.append(out.data)


def ends(cookie_a: bytes, cookie_b: bytes) -> tuple[H.Handshake, H.Handshake]:
    a = H.Handshake(cookie=cookie_a, node=NodeId("a", 1), initiator=True)
    b = H.Handshake(cookie=cookie_b, node=NodeId("b", 2), initiator=False)
    return a, b


@given(st.binary(min_size=1, max_size=64))
def test_two_ends_with_one_cookie_finish_and_learn_each_other(cookie: bytes) -> None:
    a, b = ends(cookie, cookie)
    run_handshake(a, b)
    assert (a.state, b.state) == (H.HandshakeState.DONE, H.HandshakeState.DONE)
    assert (a.peer, b.peer) == (NodeId("b", 2), NodeId("a", 1))


@given(st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64))
def test_two_ends_with_different_cookies_both_fail(one: bytes, other: bytes) -> None:
    if one == other:
        return
    a, b = ends(one, other)
    run_handshake(a, b)
    assert (a.state, b.state) == (H.HandshakeState.FAILED, H.HandshakeState.FAILED)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=5))
def test_corrupted_handshake_input_fails_with_a_reason_never_an_exception(
    garbage: list[bytes],
) -> None:
    end = H.Handshake(cookie=b"c", node=NodeId("a", 1), initiator=False)
    end.start()
    for body in garbage:
        if end.state in (H.HandshakeState.FAILED, H.HandshakeState.DONE):
            break
        out = end.receive(body)
        assert out.error is None or state_of(end) is H.HandshakeState.FAILED
    assert end.state is not H.HandshakeState.DONE


def state_of(end: H.Handshake) -> H.HandshakeState:
    return end.state


def test_a_proof_before_the_hello_is_refused() -> None:
    end = H.Handshake(cookie=b"c", node=NodeId("a", 1), initiator=False)
    end.start()
    out = end.receive(H._encode(H._Proof(b"x" * 32)))
    assert out.error is not None and end.state is H.HandshakeState.FAILED


# --- codec and protocol items ----------------------------------------------------------


class Inner(Message):
    value: Any


class Outer(Message):
    items: list[Any]
    where: ProcessId
    extra: Any = None


node_ids = st.builds(NodeId, st.sampled_from(["127.0.0.1", "host-a", "::1"]), st.integers(1, 65535))
creations = st.integers(0, 2**32 - 1)
pids = st.builds(ProcessId, node_ids, st.integers(1, 2**40), creations)
ids = st.one_of(
    node_ids,
    pids,
    st.builds(MonitorRef, node_ids, st.integers(1, 2**40), creations),
    st.builds(SendPort, pids, st.integers(1, 2**40)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
terms = st.recursive(
    st.one_of(scalars, ids),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=5), children, max_size=4),
        st.builds(Inner, children),
        st.builds(Outer, st.lists(children, max_size=3), pids, children),
        st.builds(WhereIsReply, st.text(max_size=5), st.one_of(st.none(), pids)),
        st.builds(
            ProcessMonitorNotification,
            st.builds(MonitorRef, node_ids, st.integers(1, 99)),
            pids,
            st.sampled_from([DiedNormal(), DiedDisconnect(), DiedException("x")]),
        ),
    ),
    max_leaves=25,
)


def same_types(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return all(same_types(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return all(same_types(a[k], b[k]) for k in a)
    if isinstance(a, msgspec.Struct):
        return all(same_types(getattr(a, f), getattr(b, f)) for f in a.__struct_fields__)
    return True


@settings(max_examples=300)
@given(terms)
def test_every_message_round_trips_equal_and_with_its_types(term: Any) -> None:
    back = decode_term(encode_term(term))
    assert back == term
    assert same_types(back, term)


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(1, 2**31), terms), max_size=5), pids, terms)
def test_protocol_items_round_trip_with_ids_nested_anywhere(
    sends: list[tuple[int, Any]], pid: ProcessId, term: Any
) -> None:
    ref = MonitorRef(pid.node, 5, pid.creation)

    def items(wire: Any) -> list[P.Item]:
        """The items, their Any fields made by *wire* (to_wire to send, or as they are)."""
        return [
            *(P.Send(lid, pid.creation, wire(t)) for lid, t in sends),
            P.NSend("name", wire(term)),
            P.ChanSend(pid.lid, pid.creation, 3, wire(term)),
            P.Monitor(ref, pid, pid, True),
            P.Unmonitor(ref, pid),
            P.Died(ref, pid, pid, DiedException("why"), False),
            P.Exit(pid, pid, wire(term), False),
            P.SpawnRequest(7, pid.creation, "mod.fn", wire((term, pid)), True),
            P.Reply(7, pid.creation, wire(term), None),
            P.WhereIs("logger", pid),
        ]

    back = P.decode_items(P.encode_items(items(to_wire)))
    assert back == items(lambda t: t)
    for item in back:
        for field in item.__struct_fields__:
            assert not isinstance(getattr(item, field), Undecodable)
