# Journal -> cloud sync (protocol.md "Event batch", "Ack"). A window of up to `window` batches in
# flight (D25-L): consecutive batches from the oldest unacked record, each waiting for its own
# application ack (a PUBACK is not a receipt, invariant 3). The journal trims only on an ack that
# covers its oldest record (D2); an ack for a later batch of the window is remembered in its slot
# and applied once the batches before it are acked. A batch without its ack after ack_timeout_ms
# is sent again, the same range byte for byte, and until then nothing else goes out while
# anything is in flight (a cloud that acks nothing gets one batch per timeout, not a window). A
# batch that could still grow goes out while others are in flight only once a full one is there:
# live taps go out as before, one batch in flight. After every (re)connect the window starts
# again from the oldest record.
# The same task publishes the retained status (protocol.md "Status") every heartbeat_s and at
# once when it changed: one long-lived task less than a heartbeat task of its own.
# A batch is never assembled in RAM: next_batch() measures it, write_batch() renders it from the
# journal again straight into the socket, for the first transmission and for every MQTT
# retransmission alike (the event JSON is a pure function of the stored record, so the bytes are
# the same). A 64 KiB board keeps full-size batches without a batch buffer.
# Sync also keeps the board's last errors (error(): the status key "err"; err.log on flash).
# An ack is applied only for events this board published and still holds, and, on a board with an
# ack key (device.json "ack_key"), only with the cloud's "mac" (protocol.md "Ack"); anything else
# is ignored and recorded in the errors (issue #13 item 6, D24-B).
import json

from compat import emit, mem_free, sleep_ms, ticks_add, ticks_diff, ticks_ms

FW_VERSION = "0.1.0"
MAX_BATCH_BYTES = 16384
TURN_MS = 500  # longest wait of one turn of Sync.run (the supervisor's "journal" beat)
POLL_MS = 50  # how soon run() sees wake(): a flag polled, no Event and no wait_for task


def sign(key, msg):
    """The mac the cloud puts in an ack (or a floor command): the first 16 bytes of
    HMAC-SHA256(key, msg) (RFC 2104: hashlib.sha256 over key ^ ipad, then key ^ opad; the
    ports have no hmac module) as 32 lowercase hex digits. Its imports are local and the pads
    are made per call: a module global or a kept pad costs heap for good (D24-B)."""
    import hashlib
    from binascii import hexlify
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    k = bytearray(64)
    k[:len(key)] = key
    for n in range(64):
        k[n] ^= 0x36
    h = hashlib.sha256(k)
    h.update(msg)
    d = h.digest()
    for n in range(64):
        k[n] ^= 0x6A  # 0x36 ^ 0x5C: the ipad block becomes the opad block
    h = hashlib.sha256(k)
    h.update(d)
    return hexlify(h.digest()[:16]).decode()


def parse_ack(payload):
    """-> (boot, first, last, mac) or None for anything that is not a valid v1 ack (mac: the
    "mac" string, None when the ack has none)."""
    try:
        a = json.loads(payload)
        if a.get("v") != 1:
            return None
        boot, first, last = a["boot"], a["first"], a["last"]
        if not (isinstance(boot, int) and isinstance(first, int) and isinstance(last, int)):
            return None
        return boot, first, last, a.get("mac")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def topic(prefix, device, leaf):
    return prefix + "/v1/dev/" + device + "/" + leaf


class Sync:
    sup = None  # app.supervisor.Supervisor (set by the app): beat("journal") every turn of run()

    def __init__(self, journal, device, prefix, batch=32, ack_timeout_ms=3000, status=None,
                 batch_bytes=MAX_BATCH_BYTES, heartbeat_s=60, clock=None, key=None, window=8):
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
        self.hb = False  # the status changed: run() publishes it at once
        self.link = None
        self.bb = min(max(batch_bytes, 512), MAX_BATCH_BYTES)  # payload bytes of a batch at most
        self.acked = 0  # records trimmed since boot
        # The last errors (error(), the status's "err"). An empty list has room for 4 items in
        # MicroPython, and it never holds more than 3: it does not grow or move.
        self.err = []
        self._woke = False
        # The window, one list made once (one attribute and one list: each more cost the 8 KiB
        # board ~100 bytes, D25-L): w[0], w[1] = [seg, off] where the batch after the last one
        # in flight starts (Journal.records' `at` and `pos`), w[2] = the slots in use, then
        # `window` slots of 6 ints, oldest first, from w[3]: [seg, off] of the batch's first
        # record in the journal, its boot, first and last seq, and the ticks_ms deadline of its
        # ack (-1: timed out, to be sent again; None: acked while an older one is not yet).
        self._w = [0] * (3 + 6 * min(max(window, 1), 16))
        self._out = None  # next_batch()'s tuple of the batch being published
        self._held = None  # acks that came while it was: applied once the publish returns
        self._sent = None  # (boot, last seq) published: acks never reach past it
        self.key = key or None  # the ack key (device.json "ack_key"); None: none (D24-B)

    def wake(self):
        self._woke = True

    def on_message(self, t, payload):
        if t != self.t_ack:
            return
        payload = bytes(payload)  # the client passes a view into its receive buffer
        a = parse_ack(payload)
        if a is None:
            if "trial" in self.status:  # the cloud's ack of a new image's trial (ota/trial.py)
                import ota.trial
                ota.trial.ack(self, payload)
                return
            print("#", "sync", "ack", "ignored", payload[:80])
            return
        if self._out is not None:
            # The batch is being written (or may be retransmitted) from the journal: trimming
            # now would pull the records from under it.
            self._held = (self._held or []) + [a]
            return
        self._apply(a)

    def _apply(self, a):
        """Apply the ack `a` (parse_ack's tuple), then settle the window; a None only settles
        it: drop the slots the journal no longer holds (acked and trimmed), then trim the acked
        slots that lead the window, one journal.ack (one cursor write) for a run of them. If no
        slot holds the journal's oldest record, the window is not the journal's any more (a
        full journal dropped its oldest segment): it starts again from the oldest record. One
        method, not two: each method costs the 8 KiB board heap (D16)."""
        w = self._w
        j = self.journal
        if a is not None:
            boot, first, last, mac = a
            k = self.key
            s = self._sent
            if k is not None and mac != sign(k, b"%s|%d|%d|%d" % (self.device.encode(), boot,
                                                                  first, last)):
                why = "mac"
            elif s is None or boot > s[0] or boot == s[0] and last > s[1]:
                why = "unsent"  # a range this board never published (issue #13 item 6)
            else:
                why = None
            if why:
                print("#", "sync", "ack", boot, first, last, why)
                self.error("ack", why)
                return
            # Every batch of the window the ack covers is acked (the cloud committed the range).
            hit = 0
            for i in range(3, 3 + w[2] * 6, 6):
                if w[i + 2] == boot and first <= w[i + 3] and w[i + 4] <= last:
                    w[i + 5] = None
                    hit = 1
            if j.covers_head(boot, first, last) and not (w[2] and w[8] is None):
                # It covers the oldest record, which is not in an acked slot (those are trimmed
                # below, a run of them at once): it trims (protocol.md).
                n = j.ack(boot, first, last)
                self.acked += n
                emit("ack", {"boot": boot, "last": last, "journal": j.count})
            elif not hit:
                # A late duplicate, or the ack of a batch sent before the window started again.
                print("#", "sync", "ack", boot, first, last, "ignored")  # not the oldest
                return
            self.wake()
        while True:
            n = w[2]
            k = 0
            while k < n and not j.covers_head(w[5 + 6 * k], w[6 + 6 * k], w[7 + 6 * k]):
                k += 1
            if k:
                for i in range(3, 3 + (n - k) * 6):
                    w[i] = w[i + k * 6]
                w[2] = n = n - k
            if not n or w[8] is not None:
                return
            boot = w[5]
            last = w[7]
            i = 9
            while i < 3 + n * 6 and w[i + 2] == boot and w[i + 5] is None:
                last = w[i + 4]
                i += 6
            c = j.ack(boot, w[6], last)
            if not c:
                w[2] = 0  # cannot happen: slot 0 covers the oldest record
                return
            self.acked += c
            emit("ack", {"boot": boot, "last": last, "journal": j.count})

    async def on_up(self, client):
        # Runs after every (re)connect: clean session, so subscribe again, then announce, then
        # re-send from the oldest record (what was in flight before may have been lost).
        self._w[2] = 0
        for t in self.subs:
            await client.subscribe(t, 1)
        await client.publish(self.t_status, self.status_payload(), 1, True)
        emit("mqtt", {"up": True})
        self.wake()

    def on_down(self):
        self._w[2] = 0
        emit("mqtt", {"up": False})
        self.error("link", "down")

    def error(self, tag, why):
        """Record an error in the board's last errors, the status key "err" (protocol.md
        "Status"): [up s, where, what, n] each, oldest first, at most 3. `tag` says where (the
        part that failed), `why` what: a short reason or an exception (its type name and first
        argument). A repeat of the newest entry only moves its time and counts it; a new entry
        is published at once and appended to err.log in the flash (rotated to err.old past
        1 KiB), which a reset does not clear (`qadam diag --serial` reads it). Allocates only
        the entry, an exception's text and the file write's transient objects; never raises (a
        failure to record is dropped). The parameter names are names the firmware interns
        anyway (compat.emit's tag, the door's why): a new one costs qstr pool room (D16)."""
        try:
            if not isinstance(why, str):
                a = why.args
                why = type(why).__name__
                if a:
                    why = why + " " + str(a[0])
            c = self.clock
            up = c.up_ms() // 1000 if c is not None else 0
            e = self.err
            if e and e[-1][1] == tag and e[-1][2] == why:
                e[-1][0] = up
                e[-1][3] += 1
                return
            if len(e) > 2:
                e.pop(0)  # the list never grows past its preallocated room
            e.append([up, tag, why, 1])
            self.status_changed()
            with open("err.log", "a") as f:
                print(self.status.get("boot"), up, tag, why, file=f)
                n = f.tell()
            if n > 1024:
                import os
                try:
                    os.remove("err.old")
                except OSError:
                    pass
                os.rename("err.log", "err.old")
        except Exception:  # flash or heap trouble: the error itself was handled by the caller
            pass

    def status_payload(self):
        s = {"v": 1, "online": True, "fw": FW_VERSION}
        s.update(self.status)
        s["err"] = self.err
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
        self._woke = True

    async def run(self):
        hb_t = ticks_ms()
        while True:
            if self.sup is not None:
                self.sup.beat("journal")
            if self.hb or ticks_diff(ticks_ms(), hb_t) >= self.heartbeat_ms:
                self.hb = False
                hb_t = ticks_ms()
                if self.link is not None and self.link.up:
                    try:
                        await self.link.publish(self.t_status, self.status_payload(), 1, True)
                    except Exception as e:
                        print("#", "sync", "status", repr(e))
                        self.error("status", e)
            # At least two turns a second, so the supervisor sees the task alive (stale_ms >= 1 s).
            timeout = TURN_MS
            w = self._w
            t = ticks_ms()
            for i in range(8, 3 + w[2] * 6, 6):
                d = w[i]
                if d is not None and d >= 0:
                    timeout = min(timeout, ticks_diff(d, t))
            while timeout > 0 and not self._woke:
                await sleep_ms(POLL_MS if timeout > POLL_MS else timeout)
                timeout -= POLL_MS
            self._woke = False
            t = ticks_ms()
            for i in range(3, 3 + w[2] * 6, 6):
                d = w[i + 5]
                if d is not None and d >= 0 and ticks_diff(d, t) <= 0:
                    print("#", "sync", "ack", "timeout", w[i + 2], w[i + 3], w[i + 4])  # re-sent
                    self.error("ack", "timeout")
                    w[i + 5] = -1
            if self.link is None or not self.link.up or not self.journal.count:
                continue
            try:
                await self._send()
            except MemoryError as e:
                # Never let the sync task die; the ack timeout brings the next attempt.
                print("#", "sync", "batch", "MemoryError")
                self.error("batch", e)

    def _head(self, boot):
        return b'{"v":1,"dev":"%s","boot":%d,"events":[' % (self.device.encode(), boot)

    def next_batch(self, at=None, upto=None):
        """(seg, off, boot, first, last, nbytes) of the next batch: one boot, consecutive seqs,
        at most `batch` events and a payload of at most `bb` bytes, from the journal's oldest
        record or from `at` ([seg, off] of a record); [seg, off] is where its first record is.
        None when there is nothing. Only measured here; write_batch() renders the payload.
        Without `upto` the batch is a new one and _w[0:2] gets where the next one starts;
        with it, a batch that went out before is measured again up to its last seq `upto`."""
        cap = self.bb - 2  # room for the closing "]}"
        p = self._w if upto is None else None
        pos = 0
        n = 0
        for b, q, ev in self.journal.records(at, p):
            size = len(ev)  # ev: the event's JSON, rendered by the journal (byte-identical)
            if not n:
                boot, first = b, q
                a = p or at
                seg, off = a[0], a[1]
                pos = len(self._head(b))
                if pos + size > cap:
                    print("#", "sync", "events", b, q, "too large")
                    self.error("events", "too large")
                    return None
            elif (b != boot or q != last + 1 or n >= self.batch or pos + 1 + size > cap
                  or upto is not None and q > upto):
                break  # one boot, consecutive seqs, <= 32 events, fits the batch size
            else:
                pos += 1  # ","
            pos += size
            last = q
            n += 1
        if not n:
            return None
        return seg, off, boot, first, last, pos + 2

    async def write_batch(self, w):
        """Write the payload of the batch next_batch() measured (self._out) to the stream w,
        rendered from the journal event by event from the batch's first record (_out's [seg,
        off]). Raises ValueError if the journal no longer yields exactly those bytes (a full
        journal dropped the segment meanwhile): the MQTT client then drops the connection,
        whose packet promised nbytes."""
        o = self._out
        boot, first, last, nbytes = o[2], o[3], o[4], o[5]
        h = self._head(boot)
        w.write(h)
        n = len(h)
        q = first
        for b, s, ev in self.journal.records(o):
            if b != boot or s != q or q > last:
                break
            if q != first:
                w.write(b",")
                n += 1
            w.write(ev)
            n += len(ev)
            q += 1
            await w.drain()  # one event at a time: taps and the reader task run in between
        w.write(b"]}")
        if n + 2 != nbytes or q != last + 1:
            raise ValueError("batch")  # changed under the writer
        s = self._sent
        if s is None or boot > s[0] or boot == s[0] and last > s[1]:
            # The window's batches go out in journal order, each after the one before it, from
            # the oldest record: everything from there up to here went out.
            self._sent = (boot, last)

    async def _send(self):
        """Fill the window. First a batch whose ack timed out, again (the same range, so the
        same bytes; the newest one may grow), but only once nothing else is in flight; then new
        batches after the last one, while a slot is free, and while anything is in flight only
        if at least a full batch of records is unsent (live taps wait for the ack, as with one
        batch in flight)."""
        w = self._w
        j = self.journal
        while self.link is not None and self.link.up and j.count:
            self._apply(None)  # settle the window
            n = w[2]
            fly = 0
            i = -1
            left = j.count  # records not in the window (fewer if the first slot is half trimmed)
            for k in range(3, 3 + n * 6, 6):
                left -= w[k + 4] - w[k + 3] + 1
                d = w[k + 5]
                if d is None:
                    continue
                if d >= 0:
                    fly += 1
                elif i < 0:
                    i = k
            if i >= 0:
                if fly:
                    return
                # The same range again; the newest batch of the window may take the events
                # that came since (nothing follows it), as a single batch in flight always did.
                end = i == n * 6 - 3
                b = self.next_batch((w[i], w[i + 1]), None if end else w[i + 4])
                if (b is None or b[2] != w[i + 2] or b[3] != w[i + 3] or b[4] < w[i + 4]
                        or b[4] > w[i + 4] and not end):
                    w[2] = 0  # not the journal's any more: start again from the oldest
                    continue
                w[i + 4] = b[4]
            else:
                if 3 + n * 6 >= len(w) or fly and left < self.batch:
                    return
                b = self.next_batch(w if n else None)
                if b is None:
                    return
                i = 3 + n * 6
                for k in range(5):
                    w[i + k] = b[k]
                w[2] = n + 1
            # The deadline before publishing: the ack may arrive before the PUBACK is handled.
            w[i + 5] = ticks_add(ticks_ms(), self.ack_timeout_ms)
            self._out = b
            try:
                await self.link.publish(self.t_events, (b[5], self.write_batch), 1, False)
            except Exception as e:
                print("#", "sync", "publish", repr(e))
                self.error("publish", e)
                return  # the deadline stays: sent again after the timeout or the reconnect
            finally:
                self._out = None
                held, self._held = self._held, None
                for a in held or ():
                    self._apply(a)
            if self.sup is not None:
                self.sup.beat("journal")
