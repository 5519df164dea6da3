"""A resilient MQTT 3.1.1 client session over a plain TCP socket, for the ingest's hot path.

On top of the packet core (cloud/mqtt/packets.py) this adds what a long-running consumer needs:
one network thread that connects, subscribes and reconnects with exponential backoff (with jitter),
keepalive (PINGREQ when we have been silent, a dead connection when a PINGRESP does not come), and
the outgoing QoS 1 window, which is re-sent with DUP after a reconnect.

Why our own and not paho: under one event per message the ingest spent most of its Python time in
paho's per-packet machinery (docs/decisions.md, D14). Here one ``recv`` of up to ``recv_size``
bytes is parsed into every PUBLISH it holds and handed over as one list, and everything a
committed flush sends (the application acks as QoS 1 PUBLISHes, then the PUBACKs) goes out in one
``sendall``.

Delivery contract, for a persistent session (``clean_session=False``):

- incoming PUBLISHes are never acked here: :meth:`Session.send_after_commit` sends the PUBACKs
  the caller asks for, and only for messages delivered on the connection that is still up (a
  packet id is only meaningful on the connection that delivered it; the broker redelivers the
  rest after a reconnect);
- ``on_messages`` may block (the caller's queue is full); the socket is then not read, so the
  broker stops sending: backpressure, nothing dropped. It must return once :attr:`stopping`
  is set, and should call :meth:`Session.tick` while it waits so the keepalive holds.
"""

from __future__ import annotations

import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable

from cloud.mqtt import packets as P

log = logging.getLogger("qadam.mqtt")

OnMessages = Callable[[int, list[P.Publish], float], None]  # (generation, messages, monotonic)


class ConnectRefused(Exception):
    """The broker answered CONNECT with a non-zero return code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"connect refused: {P.CONNACK_REASONS.get(code, code)}")
        self.code = code


class _Dead(Exception):
    """The connection is unusable (closed, keepalive expired, protocol error)."""


class Session:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        subscriptions: list[tuple[str, int]],
        on_messages: OnMessages,
        clean_session: bool = False,
        username: str | None = None,
        password: str | None = None,
        keepalive: int = 30,
        on_connect: Callable[[int, bool], None] | None = None,
        on_disconnect: Callable[[str], None] | None = None,
        on_subscribe: Callable[[bool, tuple[int, ...]], None] | None = None,
        on_connect_failed: Callable[[str], None] | None = None,
        reconnect_min: float = 1.0,
        reconnect_max: float = 30.0,
        recv_size: int = 256 * 1024,
        max_inflight: int = 60_000,
        tick: float = 0.25,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.subscriptions = subscriptions
        self.clean_session = clean_session
        self.username, self.password = username, password
        self.keepalive = keepalive
        self.on_messages = on_messages
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_subscribe = on_subscribe
        self.on_connect_failed = on_connect_failed
        self.reconnect_min, self.reconnect_max = reconnect_min, reconnect_max
        self.recv_size = recv_size
        self.max_inflight = min(max_inflight, 0xFFFF - 1)
        self._tick = tick
        self.stopping = threading.Event()
        self._lock = threading.Lock()  # guards the socket's send side and the fields below
        self._room = threading.Condition(self._lock)  # signalled when the QoS 1 window shrinks
        self._sock: socket.socket | None = None
        self._gen = 0
        self._inflight: dict[int, bytes] = {}  # our QoS 1 PUBLISHes not PUBACKed yet
        self._next = 0
        self._sub_pid = 0
        self._last_send = 0.0
        self._last_recv = 0.0
        self._ping_at: float | None = None
        self._thread: threading.Thread | None = None

    # -- public ----------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Increments at every accepted connection; 0 before the first."""
        return self._gen

    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mqtt-session", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """DISCONNECT (the broker keeps a persistent session and what is un-acked), close, join."""
        self.stopping.set()
        with self._lock:
            sock = self._sock
            if sock is not None:
                try:
                    sock.sendall(P.DISCONNECT_BYTES)
                except OSError:
                    pass
                _shutdown(sock)
            self._room.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def send_after_commit(
        self, publishes: list[tuple[str, bytes]], acks: list[tuple[int, int]]
    ) -> int:
        """Publish ``publishes`` at QoS 1, then PUBACK each ``(generation, packet id)`` of
        ``acks`` that was delivered on the current connection, in one ``sendall``.

        The publishes are kept until the broker PUBACKs them and re-sent after a reconnect, so
        they are not lost when the connection is down now. Returns the number of PUBACKs sent."""
        with self._lock:
            out = [self._new_publish(t, p) for t, p in publishes]
            gen = self._gen
            pids = [pid for g, pid in acks if g == gen and pid]
            if pids:
                out.append(P.pubacks(pids))
            if out and not self._send_locked(b"".join(out)):
                return 0
            return len(pids)

    def publish(self, topic: str, payload: bytes) -> None:
        """One QoS 1 PUBLISH (kept and re-sent until PUBACKed)."""
        self.send_after_commit([(topic, payload)], [])

    def tick(self) -> None:
        """Send a PINGREQ if we have been silent for most of the keepalive. Any thread."""
        if not self.keepalive:
            return
        now = time.monotonic()
        with self._lock:
            if self._sock is not None and now - self._last_send >= self.keepalive * 0.75:
                if self._send_locked(P.PINGREQ_BYTES) and self._ping_at is None:
                    self._ping_at = now

    # -- sending (lock held) ---------------------------------------------------------------

    def _new_publish(self, topic: str, payload: bytes) -> bytes:
        while len(self._inflight) >= self.max_inflight and not self.stopping.is_set():
            self._room.wait(0.2)  # the broker is not acking: wait for room, do not grow
        pid = self._next_pid()
        packet = P.publish(topic, payload, 1, pid)
        self._inflight[pid] = packet
        return packet

    def _next_pid(self) -> int:
        while True:
            self._next = self._next % 0xFFFF + 1
            if self._next not in self._inflight and self._next != self._sub_pid:
                return self._next

    def _send_locked(self, data: bytes) -> bool:
        sock = self._sock
        if sock is None:
            return False
        try:
            sock.sendall(data)
        except OSError as e:  # includes a send timeout: the stream may be cut mid-packet
            log.debug("mqtt send failed: %r", e)
            _shutdown(sock)  # the network thread sees it and reconnects
            self._sock = None
            return False
        self._last_send = time.monotonic()
        return True

    # -- network thread --------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.reconnect_min
        while not self.stopping.is_set():
            try:
                sock, parser, present, early = self._handshake()
            except (OSError, P.MalformedPacket, ConnectRefused, _Dead) as e:
                if self.on_connect_failed is not None and not self.stopping.is_set():
                    self.on_connect_failed(str(e) if isinstance(e, ConnectRefused) else repr(e))
                self._backoff(delay)
                delay = min(delay * 2, self.reconnect_max)
                continue
            delay = self.reconnect_min
            reason = "stopped"
            try:
                self._connected(sock, present)
                self._handle(early, time.monotonic())
                self._read_loop(sock, parser)
            except (OSError, P.MalformedPacket, _Dead) as e:
                reason = repr(e)
            finally:
                with self._lock:
                    if self._sock is sock:
                        self._sock = None
                    self._room.notify_all()
                _shutdown(sock)
                sock.close()
            if self.on_disconnect is not None:
                self.on_disconnect("stopped" if self.stopping.is_set() else reason)
            if not self.stopping.is_set():
                self._backoff(delay)

    def _backoff(self, delay: float) -> None:
        self.stopping.wait(delay * random.uniform(0.5, 1.0))

    def _handshake(self) -> tuple[socket.socket, P.Parser, bool, list[P.Packet]]:
        """Connect and read the CONNACK. Returns the packets that came in the same read after
        it: with a session present the broker sends queued PUBLISHes right behind it."""
        timeout = float(self.keepalive or 30)
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(
                P.connect(self.client_id, clean_session=self.clean_session,
                          keepalive=self.keepalive, username=self.username,
                          password=self.password)
            )  # fmt: skip
            parser = P.Parser()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and not self.stopping.is_set():
                if not select.select([sock], [], [], self._tick)[0]:
                    continue
                data = sock.recv(4096)
                if not data:
                    raise _Dead("closed before CONNACK")
                got = parser.feed(data)
                if not got:
                    continue
                ack = got[0]
                if not isinstance(ack, P.Connack):
                    raise P.MalformedPacket(f"expected CONNACK first, got {ack!r:.60}")
                if ack.return_code:
                    raise ConnectRefused(ack.return_code)
                return sock, parser, ack.session_present, got[1:]
            raise _Dead("no CONNACK")
        except BaseException:
            sock.close()
            raise

    def _connected(self, sock: socket.socket, session_present: bool) -> None:
        with self._lock:
            self._gen += 1
            self._sock = sock
            self._last_recv = self._last_send = time.monotonic()
            self._ping_at = None
            # MQTT 3.1.1 4.4: re-send un-acked QoS 1 PUBLISHes (DUP) after a reconnect
            resend = [P.set_dup(p) for p in self._inflight.values()]
            self._sub_pid = 0
            self._sub_pid = self._next_pid()
            resend.append(P.subscribe(self._sub_pid, self.subscriptions))
            if not self._send_locked(b"".join(resend)):
                raise _Dead("send failed right after CONNACK")
            gen = self._gen
        if self.on_connect is not None:
            self.on_connect(gen, session_present)

    def _read_loop(self, sock: socket.socket, parser: P.Parser) -> None:
        recv_size, tick = self.recv_size, self._tick
        while not self.stopping.is_set():
            if not select.select([sock], [], [], tick)[0]:
                self._keepalive(time.monotonic())
                continue
            data = sock.recv(recv_size)
            if not data:
                raise _Dead("closed by the broker")
            now = time.monotonic()
            self._last_recv = now
            self._ping_at = None  # anything from the broker proves the connection lives
            self._handle(parser.feed(data), now)
            self._keepalive(time.monotonic())

    def _handle(self, packets: list[P.Packet], now: float) -> None:
        msgs: list[P.Publish] = []
        for pkt in packets:
            if type(pkt) is P.Publish:
                if pkt.qos == 2:
                    raise P.MalformedPacket("QoS 2 PUBLISH on a QoS 1 subscription")
                msgs.append(pkt)
            elif type(pkt) is P.Puback:
                with self._lock:
                    if self._inflight.pop(pkt.pid, None) is not None:
                        self._room.notify_all()
            elif type(pkt) is P.Suback:
                self._subacked(pkt)
            elif type(pkt) is P.Connack:
                raise P.MalformedPacket("second CONNACK")
            # Pingresp: any bytes count as alive (see _read_loop); Unsuback: we never unsubscribe
        if msgs:
            self.on_messages(self._gen, msgs, now)

    def _subacked(self, pkt: P.Suback) -> None:
        if pkt.pid != self._sub_pid:
            return
        ok = all(c != P.SUBACK_FAILURE for c in pkt.return_codes)
        if self.on_subscribe is not None:
            self.on_subscribe(ok, pkt.return_codes)

    def _keepalive(self, now: float) -> None:
        if not self.keepalive:
            return
        if self._ping_at is not None and now - self._ping_at > self.keepalive:
            raise _Dead(f"no PINGRESP within {self.keepalive} s")
        self.tick()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
