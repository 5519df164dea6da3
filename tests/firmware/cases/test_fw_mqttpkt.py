from net.mqttdec import decode_varlen, parse_publish, publish_packet
from net.mqttpkt import (
    MQTTError,
    connect_packet,
    encode_varlen,
    puback_packet,
    subscribe_packet,
)


def test_varlen_boundaries():
    cases = [(0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
             (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"),
             (2097152, b"\x80\x80\x80\x01"), (268435455, b"\xff\xff\xff\x7f")]
    for n, enc in cases:
        assert encode_varlen(n) == enc, n
        assert decode_varlen(b"\x30" + enc, 1) == (n, 1 + len(enc))


def test_varlen_errors():
    for bad in (b"\xff\xff\xff\xff\x01", b"\x80"):
        try:
            decode_varlen(bad)
            raise AssertionError(f"accepted {bad!r}")
        except MQTTError:
            pass
    try:
        encode_varlen(268435456)
        raise AssertionError("accepted too large")
    except MQTTError:
        pass


def test_connect_packet():
    p = connect_packet("gate-1", 30)
    assert p == b"\x10\x12\x00\x04MQTT\x04\x02\x00\x1e\x00\x06gate-1"
    p = connect_packet("d", 60, "u", "pw", ("t/s", b"off", True, 1))
    # flags: user 0x80, password 0x40, will retain 0x20, will qos1 0x08, will 0x04, clean 0x02
    assert p[9] == 0xEE
    assert p[10:12] == b"\x00\x3c"
    assert p[12:] == b"\x00\x01d\x00\x03t/s\x00\x03off\x00\x01u\x00\x02pw"
    assert decode_varlen(p, 1) == (len(p) - 2, 2)


def test_publish_roundtrip():
    payload = b"x" * 300  # needs a two-byte remaining length
    p = publish_packet("a/b", payload, qos=1, retain=True, pid=258)
    assert p[0] == 0x33
    n, pos = decode_varlen(p, 1)
    assert n == len(p) - pos == 2 + 3 + 2 + 300
    assert parse_publish(p[0], p[pos:]) == ("a/b", payload, 1, 258, 1)
    p0 = publish_packet("t", "hi")
    assert p0 == b"\x30\x05\x00\x01thi"
    assert parse_publish(p0[0], p0[2:]) == ("t", b"hi", 0, 0, 0)


def test_subscribe_puback():
    assert subscribe_packet(1, "a/ack", 1) == b"\x82\x0a\x00\x01\x00\x05a/ack\x01"
    assert puback_packet(0x1234) == b"\x40\x02\x12\x34"
