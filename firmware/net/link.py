# Resilience layer over the MQTT protocol core: keeps one connection up, reconnecting with
# exponential backoff + jitter (so a school's boards don't all hit the broker at the same instant
# after a power cut). Callers learn about up/down through callbacks.
import os

from compat import asyncio, sleep_ms, ticks_diff, ticks_ms

from net.mqtt import RXBUF, MQTTClient

try:
    from micropython import const
except ImportError:  # CPython (the firmware's tests run there too)
    def const(x):
        return x

# const() with a leading underscore: inlined by the compiler, no name interned on the board
# (every qstr counts on a 64 KiB door: D29-G).
_BACKOFF_MIN_MS = const(500)
_BACKOFF_MAX_MS = const(30000)
_STABLE_MS = const(10000)  # a connection that lived this long resets the backoff
_TURN_MS = const(500)  # longest wait of one turn of Link.run (the supervisor's "net" beat)
_POLL_MS = const(100)  # how often a running connect is checked on
_TLS_RESERVE = const(8192)  # bytes kept in one block for the next TLS handshake (Link._reserve)


def _jitter(ms):
    # 50..100 % of ms; os.urandom exists on both ports, random differs between them.
    r = os.urandom(1)[0]
    return ms // 2 + (ms // 2) * r // 255


def backoff_ms(attempt):
    ms = _BACKOFF_MIN_MS << min(attempt, 10)
    if ms > _BACKOFF_MAX_MS:
        ms = _BACKOFF_MAX_MS
    return _jitter(ms)


class Link:
    sup = None  # app.supervisor.Supervisor (set by the app): beat("net") at least every _TURN_MS
    sync = None  # net.sync.Sync (set by the app): failed connects go to its last errors
    net = None  # net.netup.Net (set by it): no connect attempt while its network is down
    # The beats are inline (`if self.sup is not None: self.sup.beat("net")`), not a method:
    # one function less in the heap paid for Sync.error on the 64 KiB boards (D20).

    def __init__(self, device, mcfg, will=None, on_message=None, on_up=None, on_down=None,
                 rx=RXBUF):
        self.client = MQTTClient(
            device, mcfg.get("host", "127.0.0.1"), mcfg.get("port", 1883),
            user=mcfg.get("user"), password=mcfg.get("password"),
            keepalive=mcfg.get("keepalive", 30), will=will, on_message=on_message, rx=rx)
        # TLS (protocol.md "TLS"): the CA file in the flash, None: plain TCP. The context is
        # built at the first connect, by net.tlsctx (loaded only then).
        self.tls = (mcfg.get("ca") or "ca.pem") if mcfg.get("tls") else None
        self.client.server_hostname = mcfg.get("server_hostname")
        self.on_up = on_up  # async callback(client), run after every (re)connect
        self.on_down = on_down  # sync callback()
        self.up = False
        self._stop = False
        self._res = None
        self._reserve()

    def _reserve(self):
        # A TLS handshake needs several KB in few pieces (mbedTLS's record buffers, the
        # certificate chain; a 3,048-byte block among them). A board whose heap the app has cut
        # up (a canteen: menu, commands, taps) may have 20 KB free and no such piece, so a TLS
        # board holds one block from the start (made before the app's objects) and again
        # whenever it is offline, and frees it just before each handshake (D28-I).
        if self.tls is not None and self._res is None:
            import gc
            gc.collect()
            try:
                self._res = bytearray(_TLS_RESERVE)
            except MemoryError:
                pass

    async def _beating(self, aw):
        # Await aw (a connect, the setup after it) as a task and beat while it runs: a connect
        # may take its whole 10 s timeout, which must not look like a dead network task.
        t = asyncio.create_task(aw)
        try:
            while not t.done():
                if self.sup is not None:
                    self.sup.beat("net")
                await sleep_ms(_POLL_MS)
        except BaseException:  # cancelled (the app quits): take the connect down with us
            t.cancel()
            raise
        return await t

    async def _sleep(self, ms):
        # The backoff (up to 30 s) in turns of at most _TURN_MS, beating on each.
        while ms > 0:
            if self.sup is not None:
                self.sup.beat("net")
            n = ms if ms < _TURN_MS else _TURN_MS
            await sleep_ms(n)
            ms -= n

    async def run(self):
        attempt = 0
        while not self._stop:
            if self.sup is not None:
                self.sup.beat("net")
            if self.net is not None and not self.net.up:
                await sleep_ms(_POLL_MS)
                continue
            t0 = ticks_ms()
            if self._res is not None:  # the block held for the handshake is its now
                self._res = None
                import gc
                gc.collect()
            try:
                if self.tls is not None and self.client.ssl is None:
                    from net.tlsctx import context
                    self.client.ssl = context(self.tls)
                await self._beating(self.client.connect())
            except Exception as e:
                print("#", "link", "connect", repr(e))
                if self.sync is not None:
                    tag = "link"
                    if self.tls is not None:
                        # A refused certificate is a "tls" error with mbedTLS's reason, not
                        # a dead link: the board never falls back to plain TCP.
                        from net.tlsctx import reason
                        why = reason(e)
                        if why:
                            tag, e = "tls", why
                    self.sync.error(tag, e)
                self._reserve()
                await self._sleep(backoff_ms(attempt))
                attempt += 1
                continue
            self.up = True
            try:
                if self.on_up:
                    await self._beating(self.on_up(self.client))
            except Exception as e:
                # e.g. SUBACK timeout: start over rather than run half set up.
                print("#", "link", "on_up", repr(e))
                if self.sync is not None:
                    self.sync.error("on_up", e)
                await self.client.disconnect()
            closed = self.client._closed
            while not closed.is_set():  # connected: poll until the link drops
                # A plain sleep, not wait_for(closed.wait()): that keeps a helper task and two
                # coroutines in the heap for the whole connection.
                if self.sup is not None:
                    self.sup.beat("net")
                await sleep_ms(_POLL_MS)
            self.up = False
            if self.on_down:
                self.on_down()
            self._reserve()
            if self._stop:
                break
            attempt = 0 if ticks_diff(ticks_ms(), t0) > _STABLE_MS else attempt + 1
            await self._sleep(backoff_ms(attempt))

    async def publish(self, topic, payload, qos=1, retain=False, timeout_ms=5000):
        await self.client.publish(topic, payload, qos, retain, timeout_ms)

    async def stop(self):
        self._stop = True
        await self.client.disconnect()
