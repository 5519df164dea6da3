# Door / turnstile controller. Invariant 1: the tap decision is local and never waits on the
# network or on the journal write: card key -> whitelist lookup -> rules -> relay/LED first, then
# the event is journaled and the sync task is woken.
# Optional parts live in app.turnstile (loaded by app.supervisor only when device.json/board.json
# ask for them): schedules and anti-passback (app.rules), passage sensors ("not_passed" events),
# LED/buzzer patterns.
import gc

from compat import asyncio, emit, hexlify, sleep_ms, ticks_add, ticks_diff, ticks_ms
from store.cardkey import card_key
from store.jcodec import READERS, tap_json  # one tuple of READERS in the heap, not two

DEBOUNCE_MS = 1500  # a card held on the reader is reported over and over; count it once


class Door:
    def __init__(self, board, whitelist, wl_reason, journal, clock, site_key, boot,
                 relay_ms=300, reader="in", on_event=None):
        self.board = board
        self.wl = whitelist
        self.wl_reason = wl_reason or "no_whitelist"
        self.journal = journal
        self.clock = clock
        self.site_key = site_key
        self.boot = boot
        self.seq = 0
        self.relay_ms = relay_ms
        self.reader = reader
        self.on_event = on_event
        self.taps = 0
        self.rules = None  # app.rules.Rules: schedules, anti-passback
        self.online = None  # callable: the cloud is reachable (hard vs soft anti-passback)
        self.passage = None  # callable(reader, seq, key) -> has a passage sensor (app.turnstile)
        self.signal = None  # callable(granted, reason): LED/buzzer patterns (app.turnstile)
        self._last_key = None
        self._last_t = 0

    def tap(self, uid, reader=None):
        """Handle one card read. Returns the result string, or None if debounced/invalid."""
        reader = reader or self.reader
        if reader not in READERS:
            emit("ignored", {"why": "unknown_reader"})
            return None
        now = ticks_ms()
        key = card_key(self.site_key, uid)
        if key == self._last_key and ticks_diff(now, self._last_t) < DEBOUNCE_MS:
            self._last_t = now  # still held: keep suppressing
            emit("ignored", {"why": "debounce"})
            return None
        self._last_key = key
        self._last_t = now
        return self.decide(key, reader)

    def decide(self, key, reader, method=None, why=None):
        """The decision for a card key, or (app.altid) a person key identified by `method`
        ("qr", "pin"; its event carries `method`); `why`: the alt-id check refused, reason."""
        clk = self.clock
        wl = self.wl
        rules = self.rules
        # One assignment each, not `granted, reason = False, "..."`: a tuple of constants is an
        # object in the heap for good (64 KiB boards, docs/decisions.md D16).
        if why is not None:
            granted = False
            reason = why
        elif wl is None:
            granted = False
            reason = self.wl_reason
        elif not wl.lookup(key) or (method is None and wl.attrs() & 0xC0):
            # (attrs bits 6-7: a person's or a PIN's record, D29-J; never a card's)
            granted = False
            reason = "unknown_card"
        elif rules is None:
            granted = True
            reason = "ok"
        else:
            granted, reason = rules.check(wl.attrs() & 3, wl.profile(), key, reader, clk.now(),
                                          clk.synced, self.online() if self.online else True)
        if granted:
            self._pulse(reader)
            self.board.led.ok()
        else:
            self.board.led.deny()
        if self.signal:
            self.signal(granted, reason)
        result = "granted" if granted else "denied"

        # Only now the slow parts: identity, journal (flash write), report, wake sync.
        self.seq += 1
        self.taps += 1
        # The journal stores the fields (31 bytes) and renders the event JSON from them; it returns
        # the seq the event got (seq + 1 if a full journal had to write a "dropped" event first).
        if method is None:
            self.append(self.journal.append_tap, (self.boot, self.seq, clk.now(), clk.synced,
                                                  clk.up_ms(), reader, key, result, reason))
        else:  # the tap's JSON with "method" last (protocol.md "Alternative identification")
            t = clk.now()
            up = clk.up_ms()
            ev = tap_json(self.boot, self.seq, t, clk.synced, up, reader, key, result, reason)
            self.append(self.journal.append, (self.boot, self.seq, ev[:-1] + b',"method":"'
                                              + method.encode() + b'"}', t, clk.synced, up,
                                              READERS.index(reader)))
        ev = {"boot": self.boot, "seq": self.seq, "card": hexlify(key), "reader": reader,
              "result": result, "reason": reason}
        if method is not None:
            ev["method"] = method
        emit("tap", ev)
        if granted:
            p = self.passage
            if (p is None or not p(reader, self.seq, key)) and rules is not None:
                rules.passed(key, reader)  # no passage sensor: the grant counts as passage
        if self.on_event:
            self.on_event()
        return result

    def append(self, fn, ev):
        try:
            try:
                self.seq = fn(*ev)
            except MemoryError:
                # A burst can leave the heap fragmented; one full collection usually frees room.
                gc.collect()
                self.seq = fn(*ev)
        except (OSError, MemoryError, ValueError) as e:
            # Flash full or heap exhausted: the door already acted; say so loudly, keep going.
            print("#", "door", "journal", repr(e))
            if self.signal:
                self.signal(False, "error")

    def _pulse(self, reader=None):
        # The relay of the reader's direction (turnstile), else the board's one relay; its own
        # pulse length (board.json pulse_ms) else device.json relay_ms.
        b = self.board
        rel = b.relay_for(reader or self.reader) if hasattr(b, "relay_for") else b.relay
        rel.off_at = ticks_add(ticks_ms(), getattr(rel, "pulse_ms", None) or self.relay_ms)
        if not rel.is_on:
            rel.on()
        if not getattr(rel, "pulsing", False):
            rel.pulsing = True
            asyncio.create_task(self._relay_off(rel))

    async def _relay_off(self, rel):
        # One timer task per relay; a new grant during the pulse just moves the deadline.
        while True:
            d = ticks_diff(rel.off_at, ticks_ms())
            if d <= 0:
                break
            await sleep_ms(d)
        rel.off()
        rel.pulsing = False
        if not self.signal:
            self.board.led.off()
