# Journal -> cloud sync (protocol.md "Event batch", "Ack"). One batch in flight at a time: send the
# oldest unacked events, wait for the application ack (a PUBACK is not a receipt, invariant 3),
# trim, repeat. Re-send from the oldest record after every (re)connect and after ack_timeout_ms.
import json

from compat import asyncio, emit, mem_free, ticks_add, ticks_diff, ticks_ms, wait_ms

FW_VERSION = "0.1.0"
MAX_BATCH_BYTES = 16384
TURN_MS = 500  # longest wait of one turn of Sync.run (the supervisor's "journal" beat)


def parse_ack(payload):
    """-> (boot, first, last) or None for anything that is not a valid v1 ack."""
    try:
        a = json.loads(payload)
        if a.get("v") != 1:
            return None
        boot, first, last = a["boot"], a["first"], a["last"]
        if not (isinstance(boot, int) and isinstance(first, int) and isinstance(last, int)):
            return None
        return boot, first, last
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def topic(prefix, device, leaf):
    return "%s/v1/dev/%s/%s" % (prefix, device, leaf)


class Sync:
    sup = None  # app.supervisor.Supervisor (set by the app): beat("journal") every turn of run()

    def __init__(self, journal, device, prefix, batch=32, ack_timeout_ms=3000, status=None,
                 batch_bytes=MAX_BATCH_BYTES, heartbeat_s=60, clock=None):
        self.journal = journal
        self.device = device
        self.t_events = topic(prefix, device, "events")
        self.t_ack = topic(prefix, device, "ack")
        self.t_status = topic(prefix, device, "status")
        self.batch = min(max(batch, 1), 32)
        self.ack_timeout_ms = ack_timeout_ms
        self.status = status or {}  # extra status keys (boot, wl), filled by the app
        self.subs = [self.t_ack]  # topics (re)subscribed after every connect; the app adds more
        self.heartbeat_ms = heartbeat_s * 1000
        self.clock = clock
        self.hb = False  # the status changed: the heartbeat task publishes it at once
        self.link = None
        self.buf = None
        if batch_bytes:
            self.alloc(batch_bytes)
        self.acked = 0  # records trimmed since boot
        self._wake = asyncio.Event()
        self._inflight = None  # (boot, first, last, deadline) of the batch awaiting its ack

    def alloc(self, batch_bytes):
        self.buf = bytearray(min(max(batch_bytes, 512), MAX_BATCH_BYTES))

    def will(self):
        return (self.t_status, b'{"v":1,"online":false}', True, 1)

    def wake(self):
        self._wake.set()

    def on_message(self, t, payload):
        if t != self.t_ack:
            return
        payload = bytes(payload)  # the client passes a view into its receive buffer
        a = parse_ack(payload)
        if a is None:
            print("# sync: ignoring malformed ack %r" % payload[:80])
            return
        boot, first, last = a
        n = self.journal.ack(boot, first, last)
        if not n:
            # Only an ack covering the oldest record trims (protocol.md); e.g. a late duplicate.
            print("# sync: ack %d/%d-%d does not cover the oldest record; ignored"
                  % (boot, first, last))
            return
        self.acked += n
        emit("ack", {"boot": boot, "last": last, "journal": self.journal.count})
        self._inflight = None
        self.wake()

    async def on_up(self, client):
        # Runs after every (re)connect: clean session, so subscribe again, then announce, then
        # re-send from the oldest record (what was in flight before may have been lost).
        self._inflight = None
        for t in self.subs:
            await client.subscribe(t, 1)
        await client.publish(self.t_status, self.status_payload(), 1, True)
        emit("mqtt", {"up": True})
        self.wake()

    def on_down(self):
        self._inflight = None
        emit("mqtt", {"up": False})

    def status_payload(self):
        s = {"v": 1, "online": True, "fw": FW_VERSION}
        s.update(self.status)
        s["journal"] = self.journal.count
        s["heap"] = mem_free()
        c = self.clock
        if c is not None:
            s["up"] = c.up_ms() // 1000
            s["clock"] = c.status()
        return json.dumps(s)

    def status_changed(self):
        # e.g. a new whitelist version or the clock got synced: report now, not at the next beat.
        self.hb = True

    async def run(self):
        while True:
            if self.sup is not None:
                self.sup.beat("journal")
            # At least two turns a second, so the supervisor sees the task alive (stale_ms >= 1 s).
            timeout = TURN_MS
            inf = self._inflight
            if inf is not None:
                timeout = min(timeout, ticks_diff(inf[3], ticks_ms()))
            if timeout > 0:
                try:
                    await wait_ms(self._wake.wait(), timeout)
                except asyncio.TimeoutError:
                    pass
            self._wake.clear()
            inf = self._inflight
            if inf is not None:
                if ticks_diff(inf[3], ticks_ms()) > 0:
                    continue  # still waiting for the ack of the batch in flight
                print("# sync: no ack for %d/%d-%d, re-sending from the oldest"
                      % (inf[0], inf[1], inf[2]))
                self._inflight = None
            if self.link is None or not self.link.up or not self.journal.count:
                continue
            try:
                await self._send_oldest()
            except MemoryError:
                # Never let the sync task die; the ack timeout brings the next attempt.
                print("# sync: out of memory building a batch")

    def next_batch(self):
        """(boot, first, last, nbytes) of the oldest unacked events, written into the batch buffer
        (payload = memoryview(self.buf)[:nbytes]); None when nothing is unacked.
        The buffer is allocated once at start-up, while the heap is still in one piece: the sim
        runs in 64 KiB, where a growing bytearray per batch would fragment it."""
        buf = self.buf
        cap = len(buf) - 2  # room for the closing "]}"
        pos = 0
        n = 0
        for b, q, ev in self.journal.records():
            size = len(ev)  # ev: the event's JSON, rendered by the journal (byte-identical)
            if not n:
                boot, first = b, q
                head = (b'{"v":1,"dev":"' + self.device.encode() + b'","boot":' + str(b).encode()
                        + b',"events":[')
                pos = len(head)
                buf[0:pos] = head
                if pos + size > cap:
                    print("# sync: event %d/%d larger than the batch buffer" % (b, q))
                    return None
            elif b != boot or q != last + 1 or n >= self.batch or pos + 1 + size > cap:
                break  # one boot, consecutive seqs, <= 32 events, fits the buffer
            else:
                buf[pos] = 44  # ","
                pos += 1
            buf[pos:pos + size] = ev
            pos += size
            last = q
            n += 1
        if not n:
            return None
        buf[pos:pos + 2] = b"]}"
        return boot, first, last, pos + 2

    async def _send_oldest(self):
        b = self.next_batch()
        if b is None:
            return
        boot, first, last, nbytes = b
        payload = memoryview(self.buf)[:nbytes]
        # Set the deadline before publishing: the ack may arrive before the PUBACK is handled.
        self._inflight = (boot, first, last, ticks_add(ticks_ms(), self.ack_timeout_ms))
        try:
            await self.link.publish(self.t_events, payload, 1, False)
        except Exception as e:
            print("# sync: publish failed:", repr(e))
            # Keep the deadline: the retry happens on reconnect or on ack timeout.
