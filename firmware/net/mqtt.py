# Minimal asyncio MQTT 3.1.1 client (invariant 7). Protocol core only: one connection, no
# reconnect (that is net/link.py). Never blocks the event loop: all I/O goes through asyncio
# streams (net.stream on MicroPython). Packet encoding lives in net/mqttpkt.py.
import struct

from compat import asyncio, sleep_ms, ticks_diff, ticks_ms, wait_ms

from net.mqttpkt import (
    CONNACK,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    MQTTError,
    connect_packet,
    puback_packet,
    publish_header,
    subscribe_packet,
)
from net.stream import open_connection

try:
    from micropython import const
except ImportError:  # CPython (the firmware's tests run there too)
    def const(x):
        return x

RXBUF = 1152  # a whitelist chunk (32 + 1024 bytes) + topic fits
# A packet bigger than the receive buffer is not kept (a block of its size may not be found in
# a heap the app has cut up, D28-I): read through the buffer, its head (topic, packet id, the
# payload's first bytes) left in the first _HEAD bytes, the handler told by `cut` (a command is
# answered "too_big", net/cmd.py).
_HEAD = const(256)


class MQTTClient:
    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive=30,
                 will=None, on_message=None, rx=RXBUF):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.will = will
        self.on_message = on_message  # callback(topic, payload bytes); sync, must not block
        # TLS (net/link.py sets them): a tls.SSLContext that verifies the broker, and the name
        # its certificate must carry (None: host). None: plain TCP.
        self.ssl = self.server_hostname = None
        self.connected = False
        self._r = self._w = None
        self._pid = 0
        self._waiting = {}  # pid -> Event, for PUBACK/SUBACK
        # One writer at a time: a packet is queued whole by write(), but two drain()s at once
        # lose or repeat bytes. A flag and an Event instead of asyncio.Lock, whose module alone
        # takes ~0.8 KB of heap (the board runs in 64 KiB).
        self._wbusy = False
        self._widle = asyncio.Event()
        self._closed = asyncio.Event()
        self._last_rx = 0
        self._tasks = []
        self._rbuf = bytearray(rx)
        self.cut = False  # the last packet was bigger than the buffer: only its head was kept
        self.dups = 0  # PUBLISH retransmissions (diagnostics)

    def _next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def _send(self, pkt, tail=None):
        if self._w is None:
            raise MQTTError("offline")
        while self._wbusy:
            self._widle.clear()
            await self._widle.wait()
        w = self._w
        if w is None:
            raise MQTTError("offline")
        self._wbusy = True
        try:
            w.write(pkt)
            if callable(tail):
                await tail(w)  # a payload written as it is rendered (net.sync batches)
            elif tail:
                w.write(tail)
            await w.drain()
        except Exception:
            # Cut short (a MemoryError in a rendered batch, or in Stream.write after the socket
            # took part of a packet): the broker would read the next packet as the rest of this
            # one (D28-I saw a status's bytes arrive as an event batch), so the connection goes.
            self._wbusy = False
            await self._drop()
            raise
        finally:
            self._wbusy = False
            self._widle.set()

    async def _read_packet(self):
        hdr = await self._r.readexactly(1)
        first = hdr[0]
        mult = 1
        n = 0
        for _ in range(4):
            b = (await self._r.readexactly(1))[0]
            n += (b & 0x7F) * mult
            if not b & 0x80:
                break
            mult <<= 7
        else:
            raise MQTTError("bad length")
        rb = self._rbuf
        self.cut = n > len(rb)
        if not n:
            body = b""
        elif hasattr(self._r, "readinto"):
            # Into the preallocated buffer (MicroPython): a whitelist chunk a second allocates
            # nothing, so the heap does not fragment. Valid until the next packet is read.
            mv = memoryview(rb)
            m = len(rb)
            got = 0
            while got < n:
                at = got if got < m else _HEAD  # a cut packet: the rest over all but its head
                k = await self._r.readinto(mv[at:at + min(n - got, m - at)])
                if not k:
                    raise EOFError
                got += k
            body = mv[:min(n, m)]
        else:
            body = await self._r.readexactly(n)
            if self.cut:
                body = body[:len(rb)]
        self._last_rx = ticks_ms()
        return first, body
    async def connect(self, timeout_ms=10000):
        self._closed = asyncio.Event()
        self._r, self._w = await wait_ms(open_connection(self.host, self.port, self.ssl,
                                                         self.server_hostname), timeout_ms)
        try:
            await self._send(connect_packet(self.client_id, self.keepalive, self.user,
                                            self.password, self.will))
            first, body = await wait_ms(self._read_packet(), timeout_ms)
            if first != CONNACK or len(body) != 2:
                raise MQTTError("no CONNACK", first)
            if body[1]:
                # 4 = bad user name or password, 5 = not authorized (MQTT 3.1.1 table 3.1)
                raise MQTTError("refused", body[1])
        except BaseException:
            await self._close_streams()
            raise
        self.connected = True
        self._tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._pinger())]

    async def _reader(self):
        try:
            while True:
                first, body = await self._read_packet()
                kind = first & 0xF0
                if kind == PUBLISH:
                    # The payload is a memoryview into the receive buffer, valid during the
                    # callback only: a handler that keeps it must copy it.
                    topic, payload, qos, pid = _publish_mv(first, body)
                    if self.on_message:
                        try:
                            self.on_message(topic, payload)
                        except Exception as e:  # a bad message must not kill the connection
                            print("#", "mqtt", "on_message", repr(e))
                    # PUBACK after the handler ran: the broker re-delivers if we die before.
                    if qos == 1:
                        await self._send(puback_packet(pid))
                elif kind in (PUBACK, SUBACK):
                    (pid,) = struct.unpack("!H", body[0:2])
                    ev = self._waiting.get(pid)
                    if ev is not None:
                        if kind == SUBACK and len(body) > 2 and body[2] == 0x80:
                            self._waiting[pid] = False  # subscription refused
                        ev.set()
                elif kind == PINGRESP:
                    pass
        except asyncio.CancelledError:
            return
        except Exception as e:
            if self.connected:
                print("#", "mqtt", "disconnect", repr(e))
        await self._drop()

    async def _pinger(self):
        # Ping at half the keepalive; declare the link dead if nothing came back for 1.5 x.
        period = self.keepalive * 500
        try:
            while self.connected:
                await sleep_ms(period)
                if ticks_diff(ticks_ms(), self._last_rx) > self.keepalive * 1500:
                    print("#", "mqtt", "keepalive", "timeout")
                    break
                await self._send(PINGREQ_PACKET)
        except asyncio.CancelledError:
            return
        except Exception as e:
            print("#", "mqtt", "keepalive", repr(e))
        await self._drop()

    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=5000, retries=2):
        """QoS 1 returns when the PUBACK arrived (which is not a cloud receipt, invariant 3).
        Without a PUBACK within timeout_ms the same PUBLISH (same packet id) is sent again with
        the DUP flag, up to `retries` times on this connection (MQTT 3.1.1 4.4).
        `payload`: bytes/str, or (nbytes, writer) where `await writer(stream)` writes exactly
        nbytes, the same bytes every time (it is called again for a retransmission)."""
        if isinstance(payload, str):
            payload = payload.encode()
        if isinstance(payload, tuple):
            n, payload = payload
        else:
            n = len(payload)
        pid = self._next_pid() if qos else 0
        await self._request(pid, publish_header(topic, n, qos, retain, pid), payload,
                            timeout_ms, retries)

    async def subscribe(self, topic, qos=1, timeout_ms=5000):
        pid = self._next_pid()
        await self._request(pid, subscribe_packet(pid, topic, qos), None, timeout_ms)

    async def _request(self, pid, pkt, tail, timeout_ms, retries=0):
        if not pid:
            await self._send(pkt, tail)
            return
        # Register the waiter before sending so a fast PUBACK/SUBACK cannot be missed.
        ev = asyncio.Event()
        self._waiting[pid] = ev
        try:
            await self._send(pkt, tail)
            while True:
                try:
                    await wait_ms(ev.wait(), timeout_ms)
                    break
                except asyncio.TimeoutError:
                    if retries <= 0 or not self.connected:
                        raise MQTTError("timeout", pid) from None  # no PUBACK
                retries -= 1
                self.dups += 1
                pkt = bytes([pkt[0] | 0x08]) + pkt[1:]  # DUP: a retransmission, same packet id
                await self._send(pkt, tail)
        finally:
            res = self._waiting.pop(pid, None)
        if res is False:
            raise MQTTError("refused", pid)
        if not self.connected:
            raise MQTTError("disconnect")

    async def wait_closed(self):
        await self._closed.wait()

    async def _drop(self):
        if not self.connected and self._w is None:
            return
        self.connected = False
        me = asyncio.current_task()
        for t in self._tasks:
            if t is not me:
                t.cancel()  # the reader may sit in a read on a half-dead socket
        self._tasks = []
        for ev in self._waiting.values():
            if ev:
                ev.set()  # wake publishers; they see connected == False
        await self._close_streams()
        self._closed.set()

    async def _close_streams(self):
        w = self._w
        self._r = self._w = None
        if w is not None:
            try:
                w.close()
                await w.wait_closed()
            except Exception:
                pass

    async def disconnect(self):
        if self.connected:
            try:
                await self._send(DISCONNECT_PACKET)
            except Exception:
                pass
        await self._drop()

    async def abort(self):
        """Drop the connection without DISCONNECT, like a power cut: the broker publishes the
        will (the retained offline status)."""
        await self._drop()


def _publish_mv(first, body):
    # parse_publish (net/mqttdec.py) without copying the payload.
    qos = (first >> 1) & 3
    tlen = (body[0] << 8) | body[1]
    topic = bytes(body[2:2 + tlen]).decode()
    pos = 2 + tlen
    pid = 0
    if qos:
        pid = (body[pos] << 8) | body[pos + 1]
        pos += 2
    return topic, memoryview(body)[pos:], qos, pid
