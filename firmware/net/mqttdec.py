# MQTT 3.1.1 decoders and the whole-PUBLISH encoder: the reference the unit tests check the
# client's own parsing against (net.mqtt reads the remaining length and PUBLISH in place). The
# board never imports this module: its functions would only cost heap there (D16).
import struct

from net.mqttpkt import MQTTError, publish_header


def decode_varlen(buf, pos=0):
    """-> (value, position after the field). Raises MQTTError on a malformed field."""
    mult = 1
    val = 0
    for i in range(4):
        if pos >= len(buf):
            raise MQTTError("truncated remaining length")
        b = buf[pos]
        pos += 1
        val += (b & 0x7F) * mult
        if not b & 0x80:
            return val, pos
        mult <<= 7
    raise MQTTError("remaining length longer than 4 bytes")


def publish_packet(topic, payload, qos=0, retain=False, pid=0, dup=False):
    if isinstance(payload, str):
        payload = payload.encode()
    return publish_header(topic, len(payload), qos, retain, pid, dup) + payload


def parse_publish(first, body):
    """-> (topic str, payload bytes, qos, pid, retain)."""
    qos = (first >> 1) & 3
    (tlen,) = struct.unpack("!H", body[0:2])
    topic = bytes(body[2:2 + tlen]).decode()
    pos = 2 + tlen
    pid = 0
    if qos:
        (pid,) = struct.unpack("!H", body[pos:pos + 2])
        pos += 2
    return topic, bytes(body[pos:]), qos, pid, first & 1
