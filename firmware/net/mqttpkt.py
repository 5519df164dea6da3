# MQTT 3.1.1 packet encoders (pure functions, unit-tested under CPython and MicroPython).
# Kept apart from the client so each module stays small enough to compile in a 64 KiB heap. The
# decoders and the whole-PUBLISH encoder, which the board does not use (net.mqtt reads packets
# itself), are in net.mqttdec: every function here costs heap on the board (D16).
import struct

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82  # reserved flags 0b0010 are mandatory for SUBSCRIBE
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0


class MQTTError(Exception):
    pass


def encode_varlen(n):
    """Remaining Length: 7 bits per byte, high bit = more, at most 4 bytes."""
    if n < 0 or n > 268435455:
        raise MQTTError("bad length", n)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("!H", len(s)) + s


def _packet(first, body):
    return bytes([first]) + encode_varlen(len(body)) + body


def connect_packet(client_id, keepalive=30, user=None, password=None, will=None, clean=True):
    """will: (topic, message, retain, qos) or None."""
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will:
        topic, msg, retain, qos = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(msg)
    if user is not None:
        flags |= 0x80
        payload += _str(user)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    var = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    return _packet(CONNECT, var + payload)


def publish_header(topic, plen, qos=0, retain=False, pid=0, dup=False):
    """Fixed + variable header of a PUBLISH whose payload is plen bytes; the payload is written
    after it separately so a large batch is not copied once more."""
    first = PUBLISH | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    var = _str(topic)
    if qos:
        var += struct.pack("!H", pid)
    return bytes([first]) + encode_varlen(len(var) + plen) + var


def subscribe_packet(pid, topic, qos=1):
    return _packet(SUBSCRIBE, struct.pack("!H", pid) + _str(topic) + bytes([qos]))


def puback_packet(pid):
    return bytes([PUBACK, 2]) + struct.pack("!H", pid)


PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
