"""The MQTT 3.1.1 packet core (cloud/mqtt/packets.py): exact bytes, streaming, malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.mqtt import packets as P


def _server_publish(topic: bytes, payload: bytes, qos: int, pid: int, flags: int = 0) -> bytes:
    """A PUBLISH as a broker sends it (built by hand, independent of the encoder)."""
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += pid.to_bytes(2, "big")
    body += payload
    return bytes((0x30 | qos << 1 | flags,)) + P._varint(len(body)) + body


def test_connect_bytes_match_the_spec_example() -> None:
    got = P.connect("cid", clean_session=False, keepalive=30, username="u", password="pw")
    want = (
        b"\x10\x16"  # CONNECT, remaining length 22
        b"\x00\x04MQTT\x04"  # protocol name, level 4 (3.1.1)
        b"\xc0"  # user name + password, clean session off
        b"\x00\x1e"  # keepalive 30 s
        b"\x00\x03cid\x00\x01u\x00\x02pw"
    )
    assert got == want
    clean = P.connect("c", clean_session=True, keepalive=0)
    assert clean[9] == 0x02 and clean.endswith(b"\x00\x01c")


def test_connect_refuses_a_password_without_a_user() -> None:
    with pytest.raises(ValueError):
        P.connect("c", clean_session=True, keepalive=1, password="x")


def test_subscribe_publish_puback_bytes() -> None:
    assert P.subscribe(7, [("a/+", 1)]) == b"\x82\x08\x00\x07\x00\x03a/+\x01"
    assert P.publish("t", b"xy", 1, 258) == b"\x32\x07\x00\x01t\x01\x02xy"
    assert P.publish("t", b"", 0) == b"\x30\x03\x00\x01t"
    assert P.set_dup(P.publish("t", b"", 1, 1))[0] == 0x3A
    assert P.puback(1) == b"\x40\x02\x00\x01"
    assert P.pubacks([1, 65535]) == b"\x40\x02\x00\x01\x40\x02\xff\xff"
    with pytest.raises(ValueError):
        P.puback(0)
    with pytest.raises(ValueError):
        P.publish("t", b"", 3, 1)


@pytest.mark.parametrize("n", [0, 127, 128, 16383, 16384, 2_097_151, 2_097_152, P.MAX_REMAINING])
def test_varint_boundaries(n: int) -> None:
    enc = P._varint(n)
    assert len(enc) == 1 + (n > 127) + (n > 16383) + (n > 2_097_151)


@pytest.mark.parametrize("size", [0, 120, 20_000, 3_000_000])
def test_multi_byte_lengths_parse(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    assert P.Parser().feed(_server_publish(b"t", payload, 1, 1)) == [P.Publish("t", payload, 1, 1)]


def test_varint_out_of_range() -> None:
    with pytest.raises(ValueError):
        P._varint(P.MAX_REMAINING + 1)


def test_parses_every_server_packet() -> None:
    stream = (
        b"\x20\x02\x01\x00"  # CONNACK, session present
        + b"\x90\x04\x00\x09\x01\x80"  # SUBACK pid 9: QoS 1, failure
        + _server_publish(b"a/b", b"hello", 1, 300, flags=0x08)
        + _server_publish(b"q0", b"", 0, 0, flags=0x01)
        + b"\x40\x02\x12\x34"  # PUBACK
        + b"\xb0\x02\x00\x02"  # UNSUBACK
        + b"\xd0\x00"  # PINGRESP
    )
    got = P.Parser().feed(stream)
    assert got == [
        P.Connack(True, 0),
        P.Suback(9, (1, 0x80)),
        P.Publish("a/b", b"hello", 1, 300, dup=True, retain=False),
        P.Publish("q0", b"", 0, 0, dup=False, retain=True),
        P.Puback(0x1234),
        P.Unsuback(2),
        P.Pingresp(),
    ]


def test_byte_by_byte_feeding_gives_the_same_packets() -> None:
    stream = b"".join(_server_publish(b"x/y", bytes([i]) * i, 1, i + 1) for i in range(200))
    whole = P.Parser().feed(stream)
    p = P.Parser()
    pieces = []
    for i in range(len(stream)):
        pieces += p.feed(stream[i : i + 1])
    assert pieces == whole and len(whole) == 200 and p.buffered == 0


def test_a_non_utf8_topic_is_kept_readable() -> None:
    (pkt,) = P.Parser().feed(_server_publish(b"a/\xff/events", b"p", 1, 1))
    assert isinstance(pkt, P.Publish) and pkt.topic == "a/\ufffd/events"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x30\xff\xff\xff\xff\x01", "longer than 4 bytes"),
        (b"\x36\x03\x00\x01t", "QoS 3"),
        (b"\x32\x03\x00\x01t", "packet id"),
        (b"\x32\x05\x00\x01t\x00\x00", "packet id 0"),
        (b"\x30\x01\x00", "too short"),
        (b"\x40\x03\x00\x01\x00", "PUBACK"),
        (b"\x42\x02\x00\x01", "PUBACK"),
        (b"\xd0\x01\x00", "PINGRESP"),
        (b"\x20\x02\x02\x00", "CONNACK"),
        (b"\x20\x02\x00\x06", "return code"),
        (b"\x90\x02\x00\x01", "SUBACK"),
        (b"\x90\x03\x00\x01\x03", "SUBACK return code"),
        (b"\x10\x00", "unexpected packet type 1"),
        (b"\x50\x02\x00\x01", "unexpected packet type 5"),
        (b"\x00\x00", "unexpected packet type 0"),
        (b"\xf0\x00", "unexpected packet type 15"),
    ],
)
def test_malformed_input_is_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(P.MalformedPacket, match=message):
        P.Parser().feed(data)


def test_packet_size_limit() -> None:
    p = P.Parser(max_packet=10)
    with pytest.raises(P.MalformedPacket, match="limit"):
        p.feed(b"\x30\x0b")  # refused from the header alone, before the body arrives


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    """Any bytes: a list of packets or MalformedPacket, never another exception or a hang
    (every loop in feed consumes input)."""
    p = P.Parser()
    try:
        got = p.feed(data)
    except P.MalformedPacket:
        return
    assert all(isinstance(x, P.Packet) for x in got)
    assert p.buffered <= len(data)


@settings(max_examples=500, deadline=None)
@given(
    msgs=st.lists(
        st.tuples(st.text(max_size=40), st.binary(max_size=200), st.sampled_from([0, 1])),
        min_size=1,
        max_size=20,
    ),
    cut=st.data(),
)
def test_fuzz_streams_cut_anywhere(msgs: list[tuple[str, bytes, int]], cut: st.DataObject) -> None:
    """Valid PUBLISH streams split at arbitrary points parse to the same packets; a truncated
    stream yields the complete packets and keeps the rest buffered."""
    stream = b"".join(
        _server_publish(t.encode("utf-8", "surrogatepass"), pl, q, i + 1)
        for i, (t, pl, q) in enumerate(msgs)
    )
    want = P.Parser().feed(stream)
    assert [(m.payload, m.qos) for m in want if isinstance(m, P.Publish)] == [
        (pl, q) for _, pl, q in msgs
    ]
    points = sorted(cut.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    p, got, prev = P.Parser(), [], 0
    for at in points + [len(stream)]:
        got += p.feed(stream[prev:at])
        prev = at
    assert got == want and p.buffered == 0
    end = cut.draw(st.integers(0, len(stream) - 1))
    p2 = P.Parser()
    part = p2.feed(stream[:end])
    assert part == want[: len(part)] and p2.buffered == end - sum(
        len(_server_publish(t.encode("utf-8", "surrogatepass"), pl, q, i + 1))
        for i, (t, pl, q) in enumerate(msgs[: len(part)])
    )


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 199))
def test_fuzz_corrupted_valid_packets(noise: bytes, where: int) -> None:
    """A valid stream with bytes overwritten: packets or MalformedPacket, nothing else."""
    stream = bytearray(
        b"\x20\x02\x00\x00" + _server_publish(b"a/v1/dev/x/events", b"{}" * 20, 1, 5) + b"\xd0\x00"
    )
    at = where % len(stream)
    stream[at : at + len(noise)] = noise
    try:
        P.Parser().feed(bytes(stream))
    except P.MalformedPacket:
        pass
