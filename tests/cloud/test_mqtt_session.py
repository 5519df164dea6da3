"""The MQTT session layer (cloud/mqtt/session.py) against a scripted fake broker (reconnects,
re-sends, keepalive, garbage) and against the real Mosquitto (persistent session redelivery)."""

from __future__ import annotations

import queue
import socket
import threading
import uuid
from collections.abc import Iterator

import pytest
from cloud_helpers import drop_session

from cloud.mqtt import packets as P
from cloud.mqtt.session import Session


class FakeBroker:
    """Accepts connections one after another; records every packet a client sends (as raw
    ``(first byte, body)``) per connection; the test scripts the answers."""

    def __init__(self) -> None:
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.conns: queue.Queue[FakeConn] = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            self.conns.put(FakeConn(s))

    def next_conn(self, timeout: float = 10) -> FakeConn:
        return self.conns.get(timeout=timeout)

    def close(self) -> None:
        self.srv.close()


class FakeConn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        sock.settimeout(10)

    def read(self) -> tuple[int, bytes]:
        """One packet from the client: (first byte, body)."""
        while True:
            if len(self.buf) >= 2:
                length, mult, i = 0, 0, 1
                while i < len(self.buf):
                    b = self.buf[i]
                    length |= (b & 0x7F) << mult
                    i += 1
                    if b < 0x80:
                        break
                    mult += 7
                if len(self.buf) >= i + length:
                    first, body = self.buf[0], self.buf[i : i + length]
                    self.buf = self.buf[i + length :]
                    return first, body
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data

    def handshake(self, session_present: bool = False) -> tuple[bytes, int]:
        """Read CONNECT, answer CONNACK, read SUBSCRIBE (after any re-sent PUBLISHes), answer
        SUBACK. Returns the CONNECT body and the packets re-sent before the SUBSCRIBE."""
        first, connect = self.read()
        assert first == 0x10
        self.sock.sendall(b"\x20\x02" + bytes((int(session_present), 0)))
        resent = 0
        while True:
            first, body = self.read()
            if first >> 4 == P.SUBSCRIBE:
                self.sock.sendall(b"\x90\x03" + body[:2] + b"\x01")
                return connect, resent
            resent += 1
            self.resent_first = first

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    b = FakeBroker()
    yield b
    b.close()


def _session(
    port: int, host: str = "127.0.0.1", cid: str = "cid-1", **kw: object
) -> tuple[Session, queue.Queue[tuple[int, P.Publish]]]:
    got: queue.Queue[tuple[int, P.Publish]] = queue.Queue()

    def on_messages(gen: int, msgs: list[P.Publish], _at: float) -> None:
        for m in msgs:
            got.put((gen, m))

    args: dict[str, object] = dict(
        subscriptions=[("t/#", 1)], on_messages=on_messages, reconnect_min=0.05,
        reconnect_max=0.2,
    )  # fmt: skip
    args.update(kw)
    return Session(host, port, cid, **args), got  # type: ignore[arg-type]


def test_credentials_session_flag_and_batch_of_publishes(broker: FakeBroker) -> None:
    s, got = _session(broker.port, username="ingest", password="pw")
    s.start()
    try:
        conn = broker.next_conn()
        connect, _ = conn.handshake()
        assert (
            connect
            == P.connect(
                "cid-1", clean_session=False, keepalive=30, username="ingest", password="pw"
            )[2:]
        )
        conn.sock.sendall(b"".join(P.publish(f"t/{i}", b"x", 1, i + 1) for i in range(50)))
        msgs = [got.get(timeout=5) for _ in range(50)]
        assert [(g, m.topic, m.pid) for g, m in msgs] == [(1, f"t/{i}", i + 1) for i in range(50)]
        # nothing is acked until asked; then the ack PUBLISH first, the PUBACKs after it
        assert s.send_after_commit([("a/1", b"ack")], [(1, 1), (1, 2), (0, 3)]) == 2
        first, body = conn.read()
        assert first == 0x32 and body.endswith(b"ack")
        assert [conn.read() for _ in range(2)] == [(0x40, b"\x00\x01"), (0x40, b"\x00\x02")]
    finally:
        s.stop()


def test_publishes_right_behind_the_connack_are_delivered(broker: FakeBroker) -> None:
    """With a session present Mosquitto sends queued messages in the same segment as CONNACK."""
    s, got = _session(broker.port)
    s.start()
    try:
        conn = broker.next_conn()
        assert conn.read()[0] == 0x10
        conn.sock.sendall(b"\x20\x02\x01\x00" + P.publish("t/q", b"queued", 1, 4, dup=True))
        gen, m = got.get(timeout=5)
        assert (gen, m.payload, m.pid, m.dup) == (1, b"queued", 4, True)
        assert s.send_after_commit([], [(gen, m.pid)]) == 1
        assert conn.read()[0] >> 4 == P.SUBSCRIBE
        assert conn.read() == (0x40, b"\x00\x04")
    finally:
        s.stop()


def test_unacked_publishes_are_resent_with_dup_after_a_reconnect(broker: FakeBroker) -> None:
    s, got = _session(broker.port)
    s.start()
    try:
        conn = broker.next_conn()
        conn.handshake()
        conn.sock.sendall(P.publish("t/x", b"m", 1, 9))
        assert got.get(timeout=5)[0] == 1
        s.send_after_commit([("a/1", b"one"), ("a/2", b"two")], [])
        first, body = conn.read()
        assert first == 0x32
        conn.sock.sendall(P.puback(int.from_bytes(body[5:7], "big")))  # broker acks "one" only
        conn.read()
        conn.close()  # connection lost before "two" was acked
        conn2 = broker.next_conn()
        _, resent = conn2.handshake(session_present=True)
        assert resent == 1 and conn2.resent_first == 0x3A  # PUBLISH, QoS 1, DUP
        # a PUBACK for a message of the first connection is not sent on the second
        assert s.send_after_commit([], [(1, 9)]) == 0
        assert s.generation == 2
    finally:
        s.stop()


def test_silent_broker_is_pinged_then_dropped(broker: FakeBroker) -> None:
    s, _ = _session(broker.port, keepalive=1, tick=0.05)
    s.start()
    try:
        conn = broker.next_conn()
        conn.handshake()
        assert conn.read() == (0xC0, b"")  # PINGREQ after a silent second
        # no PINGRESP: the session gives the connection up and connects again
        broker.next_conn(timeout=10).handshake()
        assert s.generation == 2
    finally:
        s.stop()


def test_garbage_from_the_broker_means_a_new_connection(broker: FakeBroker) -> None:
    disconnects: list[str] = []
    s, got = _session(broker.port, on_disconnect=disconnects.append)
    s.start()
    try:
        conn = broker.next_conn()
        conn.handshake()
        conn.sock.sendall(b"\x36\x03\x00\x01t")  # QoS 3
        broker.next_conn().handshake()
        assert any("QoS 3" in d for d in disconnects) and got.empty()
    finally:
        s.stop()


def test_refused_connect_is_retried(broker: FakeBroker) -> None:
    failures: list[str] = []
    s, _ = _session(broker.port, on_connect_failed=failures.append)
    s.start()
    try:
        conn = broker.next_conn()
        conn.read()
        conn.sock.sendall(b"\x20\x02\x00\x05")  # not authorized
        broker.next_conn().handshake()
        assert failures and "not authorized" in failures[0]
    finally:
        s.stop()


def test_persistent_session_redelivers_what_was_not_acked(mqtt_addr: tuple[str, int]) -> None:
    """Against the real broker: a QoS 1 message received but not PUBACKed comes back to the same
    client id after a reconnect; once PUBACKed it does not."""
    host, port = mqtt_addr
    cid, topic = f"sess-{uuid.uuid4().hex[:8]}", f"sess{uuid.uuid4().hex[:8]}/x"
    ready = threading.Event()

    def make() -> tuple[Session, queue.Queue[tuple[int, P.Publish]]]:
        ready.clear()
        sess, got = _session(port, host, cid, subscriptions=[(topic, 1)],
                             on_subscribe=lambda ok, c: ready.set())  # fmt: skip
        sess.start()
        assert ready.wait(10), "no SUBACK"
        return sess, got

    s1, got1 = make()
    sessions = [s1]
    try:
        s1.publish(topic, b"hello")
        _, m = got1.get(timeout=10)
        assert m.payload == b"hello" and m.qos == 1
        s1.stop()
        s2, got2 = make()
        sessions.append(s2)
        gen2, m2 = got2.get(timeout=10)
        assert m2.payload == b"hello" and m2.dup  # redelivered: it was never PUBACKed
        assert s2.send_after_commit([], [(gen2, m2.pid)]) == 1
        s2.stop()
        s3, got3 = make()
        sessions.append(s3)
        with pytest.raises(queue.Empty):
            got3.get(timeout=1.0)
    finally:
        for sess in sessions:
            sess.stop()
        drop_session(host, port, cid)
