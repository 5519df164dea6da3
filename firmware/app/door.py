# Door controller. Invariant 1: the tap decision is local and never waits on the network or on the
# journal write: card key -> whitelist lookup -> relay/LED first, then the event is journaled and
# the sync task is woken.
import gc

from compat import asyncio, emit, hexlify, sleep_ms, ticks_add, ticks_diff, ticks_ms
from store.cardkey import card_key

DEBOUNCE_MS = 1500  # a card held on the reader is reported over and over; count it once
READERS = ("in", "out", "canteen")


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
        self._last_key = None
        self._last_t = 0
        self._off_at = 0
        self._pulsing = False

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

        if self.wl is None:
            granted, reason = False, self.wl_reason
        elif self.wl.lookup(key):
            # Access profiles other than 0 are not defined yet; the listed card is let in.
            granted, reason = True, "ok"
        else:
            granted, reason = False, "unknown_card"
        if granted:
            self._pulse()
            self.board.led.ok()
        else:
            self.board.led.deny()
        result = "granted" if granted else "denied"

        # Only now the slow parts: identity, journal (flash write), report, wake sync.
        self.seq += 1
        self.taps += 1
        card = hexlify(key)
        clk = self.clock
        # The journal stores the fields (31 bytes) and renders the event JSON from them; it returns
        # the seq the event got (seq + 1 if a full journal had to write a "dropped" event first).
        ev = (self.boot, self.seq, clk.now(), clk.synced, clk.up_ms(), reader, key, result, reason)
        try:
            try:
                self.seq = self.journal.append_tap(*ev)
            except MemoryError:
                # A burst can leave the heap fragmented; one full collection usually frees room.
                gc.collect()
                self.seq = self.journal.append_tap(*ev)
        except (OSError, MemoryError) as e:
            # Flash full or heap exhausted: the door already acted; say so loudly, keep going.
            print("# door: journal append failed:", repr(e))
        emit("tap", {"boot": self.boot, "seq": self.seq, "card": card, "reader": reader,
                     "result": result, "reason": reason})
        if self.on_event:
            self.on_event()
        return result

    def _pulse(self):
        self._off_at = ticks_add(ticks_ms(), self.relay_ms)
        if not self.board.relay.is_on:
            self.board.relay.on()
        if not self._pulsing:
            self._pulsing = True
            asyncio.create_task(self._relay_off())

    async def _relay_off(self):
        # One timer task; a new grant during the pulse just moves the deadline.
        while True:
            d = ticks_diff(self._off_at, ticks_ms())
            if d <= 0:
                break
            await sleep_ms(d)
        self.board.relay.off()
        self.board.led.off()
        self._pulsing = False
