"""MQTT 3.1.1 packets, client side: encoders for what a client sends, a streaming parser for what
a broker sends. No sockets, no threads, no clock: the resilience layer (cloud/mqtt/session.py)
owns those.

The parser is built for throughput: :meth:`Parser.feed` takes whatever one ``recv`` returned
(tens of kilobytes under load), and returns every complete packet in it, keeping the tail of a
packet cut in half for the next call. Anything a broker may not send, or cannot have meant, raises
:class:`MalformedPacket` (a :class:`ValueError`); the caller drops the connection.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

MAX_REMAINING = 268_435_455  # the largest remaining length four varint bytes can say
SUBACK_FAILURE = 0x80
CONNACK_REASONS = {
    0: "accepted",
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}

PINGREQ_BYTES = b"\xc0\x00"
DISCONNECT_BYTES = b"\xe0\x00"
_U16 = struct.Struct("!H")


class MalformedPacket(ValueError):
    """The bytes from the broker are not a valid MQTT 3.1.1 packet for a client to receive."""


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    return_code: int  # 0 = accepted, see CONNACK_REASONS


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int
    pid: int  # 0 for QoS 0 (which has no packet id)
    dup: bool = False
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Puback:
    pid: int


@dataclass(frozen=True, slots=True)
class Suback:
    pid: int
    return_codes: tuple[int, ...]  # granted QoS per filter, or SUBACK_FAILURE


@dataclass(frozen=True, slots=True)
class Unsuback:
    pid: int


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


Packet = Connack | Publish | Puback | Suback | Unsuback | Pingresp
_PINGRESP = Pingresp()


# -- encoding ---------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    if not 0 <= n <= MAX_REMAINING:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    if len(b) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return _U16.pack(len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def connect(
    client_id: str,
    *,
    clean_session: bool,
    keepalive: int,
    username: str | None = None,
    password: str | None = None,
) -> bytes:
    if not 0 <= keepalive <= 0xFFFF:
        raise ValueError("keepalive must be 0..65535 s")
    if password is not None and username is None:
        raise ValueError("MQTT 3.1.1 allows a password only with a user name")
    flags = (0x02 if clean_session else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    body = _str("MQTT") + bytes((4, flags)) + _U16.pack(keepalive) + _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _str(password)
    return _packet(CONNECT << 4, body)


def subscribe(pid: int, filters: list[tuple[str, int]]) -> bytes:
    if not filters:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    body = _U16.pack(_check_pid(pid))
    for topic, qos in filters:
        if qos not in (0, 1, 2):
            raise ValueError(f"bad QoS {qos}")
        body += _str(topic) + bytes((qos,))
    return _packet(SUBSCRIBE << 4 | 0x02, body)


def publish(
    topic: str, payload: bytes, qos: int = 0, pid: int = 0, *, dup: bool = False,
    retain: bool = False,
) -> bytes:  # fmt: skip
    if qos not in (0, 1, 2):
        raise ValueError(f"bad QoS {qos}")
    first = PUBLISH << 4 | qos << 1 | (0x08 if dup else 0) | (0x01 if retain else 0)
    head = _str(topic)
    if qos:
        head += _U16.pack(_check_pid(pid))
    return bytes((first,)) + _varint(len(head) + len(payload)) + head + payload


def set_dup(packet: bytes) -> bytes:
    """The same PUBLISH with the DUP flag set (for a re-send after a reconnect)."""
    return bytes((packet[0] | 0x08,)) + packet[1:]


def puback(pid: int) -> bytes:
    return b"\x40\x02" + _U16.pack(_check_pid(pid))


def pubacks(pids: list[int]) -> bytes:
    """Many PUBACKs back to back, for one ``sendall``."""
    pack = _U16.pack
    return b"".join(b"\x40\x02" + pack(p) for p in pids)


def _check_pid(pid: int) -> int:
    if not 1 <= pid <= 0xFFFF:
        raise ValueError(f"packet id {pid} not in 1..65535")
    return pid


# -- parsing ----------------------------------------------------------------------------------


class Parser:
    """Incremental parser of the byte stream a broker sends to a client."""

    def __init__(self, max_packet: int = MAX_REMAINING) -> None:
        self.max_packet = max_packet
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete packet held for the next :meth:`feed`."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        buf = self._buf
        buf += data
        out: list[Packet] = []
        pos, n = 0, len(buf)
        try:
            while n - pos >= 2:
                # remaining length: 1..4 bytes, 7 bits each, high bit = more follows
                i = pos + 1
                length = mult = 0
                while True:
                    if i >= n:
                        return out
                    b = buf[i]
                    length |= (b & 0x7F) << mult
                    i += 1
                    if b < 0x80:
                        break
                    mult += 7
                    if mult > 21:
                        raise MalformedPacket("remaining length longer than 4 bytes")
                if length > self.max_packet:
                    raise MalformedPacket(f"packet of {length} bytes > limit {self.max_packet}")
                end = i + length
                if end > n:
                    return out
                out.append(_parse(buf[pos], buf, i, end))
                pos = end
            return out
        finally:
            del buf[:pos]


def _u16(buf: bytearray, i: int) -> int:
    return buf[i] << 8 | buf[i + 1]


def _parse(first: int, buf: bytearray, i: int, end: int) -> Packet:
    kind, flags = first >> 4, first & 0x0F
    size = end - i
    if kind == PUBLISH:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        if size < 2:
            raise MalformedPacket("PUBLISH too short for its topic length")
        tlen = _u16(buf, i)
        t_end = i + 2 + tlen
        p_start = t_end + 2 if qos else t_end
        if p_start > end:
            raise MalformedPacket("PUBLISH shorter than its topic and packet id")
        # A topic that is not UTF-8 is kept readable rather than fatal: the broker would only
        # redeliver it forever; the decoder then quarantines it (bad_topic).
        topic = buf[i + 2 : t_end].decode("utf-8", "replace")
        if qos:
            pid = _u16(buf, t_end)
            if pid == 0:
                raise MalformedPacket("PUBLISH with packet id 0")
        else:
            pid = 0
        return Publish(topic, bytes(buf[p_start:end]), qos, pid, bool(flags & 0x08),
                       bool(flags & 0x01))  # fmt: skip
    if kind in (PUBACK, UNSUBACK):
        if flags or size != 2:
            raise MalformedPacket(f"bad {'PUBACK' if kind == PUBACK else 'UNSUBACK'}")
        return Puback(_u16(buf, i)) if kind == PUBACK else Unsuback(_u16(buf, i))
    if kind == PINGRESP:
        if flags or size:
            raise MalformedPacket("bad PINGRESP")
        return _PINGRESP
    if kind == CONNACK:
        if flags or size != 2 or buf[i] & 0xFE:
            raise MalformedPacket("bad CONNACK")
        if buf[i + 1] > 5:
            raise MalformedPacket(f"CONNACK return code {buf[i + 1]}")
        return Connack(bool(buf[i] & 0x01), buf[i + 1])
    if kind == SUBACK:
        if flags or size < 3:
            raise MalformedPacket("bad SUBACK")
        codes = tuple(buf[i + 2 : end])
        if any(c not in (0, 1, 2, SUBACK_FAILURE) for c in codes):
            raise MalformedPacket("SUBACK return code out of range")
        return Suback(_u16(buf, i), codes)
    # QoS 2 flows (we subscribe and publish at QoS <= 1), client-to-server packets, reserved 0/15
    raise MalformedPacket(f"unexpected packet type {kind} from a broker")
