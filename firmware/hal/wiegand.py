# Wiegand 26/34 receiver. D0 and D1 are open-collector lines idling high; a reader sends a 0 as
# a ~50-100 us low pulse on D0 and a 1 on D1, ~1-2 ms apart (SIA AC-01 / HID H10301). The pin
# handlers run on each falling edge and only record the bit into a preallocated buffer plus the
# tick of the edge (no allocation: bits are packed into a bytearray, never into a growing int).
# A frame ends when the lines have been quiet for `gap_ms`: poll() sees that, or the handler of
# the next frame's first edge parks the finished frame in a second preallocated buffer.
#
# Wiegand 26 (H10301): P(even over bits 1..12) + 8-bit facility + 16-bit card + P(odd over
# 13..24). Wiegand 34: P(even over bits 1..16) + 16-bit facility + 16-bit card + P(odd over
# 17..32). Bits are sent MSB first. Frames of other lengths are counted and dropped.
import time

try:
    from machine import disable_irq, enable_irq
except ImportError:  # CPython tests, unix port
    def disable_irq():
        return 0

    def enable_irq(state):
        pass

_MAX_BITS = 64


class Wiegand:
    """`d0`, `d1`: Pin objects (input, pull-up) with irq(). `ticks_ms`/`ticks_diff` injectable.
    poll() returns None or (nbits, facility, card, raw) with raw = the data bits as bytes
    (3 bytes for W26, 4 for W34, MSB first), i.e. what hal.drivers.normalise_uid takes."""

    def __init__(self, d0, d1, gap_ms=25, ticks_ms=None, ticks_diff=None):
        self.gap_ms = gap_ms
        self._ticks = ticks_ms or getattr(time, "ticks_ms", None) or _ticks_ms
        self._diff = ticks_diff or getattr(time, "ticks_diff", None) or _ticks_diff
        self._buf = bytearray(_MAX_BITS // 8)
        self._n = 0
        self._last = 0
        self._f = bytearray(_MAX_BITS // 8)  # a finished frame (copied from _buf)
        self._fn = 0  # its bit count, set when the handler parked a frame ended by the gap
        self.frames = 0
        self.bad_parity = 0
        self.bad_length = 0
        self.overruns = 0  # finished frames dropped because poll() was too late
        trig = getattr(d0, "IRQ_FALLING", 2)
        d0.irq(trigger=trig, handler=self._on_d0)
        d1.irq(trigger=trig, handler=self._on_d1)

    # -- interrupt handlers: record one bit, nothing else ------------------------------------
    def _on_d0(self, pin):
        self._edge(0)

    def _on_d1(self, pin):
        self._edge(1)

    def _edge(self, bit):
        now = self._ticks()
        n = self._n
        if n and self._diff(now, self._last) > self.gap_ms:
            # The previous frame ended by the gap but poll() has not taken it yet: park it in
            # the second preallocated buffer (or drop it if that one is still full).
            if self._fn:
                self.overruns += 1
            else:
                for i in range(len(self._buf)):
                    self._f[i] = self._buf[i]
                self._fn = n
            n = 0
        if n < _MAX_BITS:
            m = 0x80 >> (n & 7)
            if bit:
                self._buf[n >> 3] |= m
            else:
                self._buf[n >> 3] &= ~m
        self._n = n + 1
        self._last = now

    # -- frame assembly, outside interrupt context -------------------------------------------
    def _bit(self, i):
        return (self._f[i >> 3] >> (7 - (i & 7))) & 1

    def _field(self, start, count):
        v = 0
        for i in range(start, start + count):
            v = (v << 1) | self._bit(i)
        return v

    def _ones(self, start, count):
        c = 0
        for i in range(start, start + count):
            c += self._bit(i)
        return c

    def poll(self):
        """Returns the next complete frame decoded, or None."""
        if self._fn:  # a frame parked by the interrupt handler
            st = disable_irq()
            n, self._fn = self._fn, 0
            enable_irq(st)
            # _f is only refilled after a whole new frame and gap (> 25 ms): safe to decode now.
            return self.decode(n)
        if not self._n or self._diff(self._ticks(), self._last) <= self.gap_ms:
            return None
        st = disable_irq()  # copy and reset atomically against a new frame's first edge
        n = self._n
        if self._diff(self._ticks(), self._last) <= self.gap_ms:
            enable_irq(st)  # an edge arrived between the check and now
            return None
        for i in range(len(self._buf)):
            self._f[i] = self._buf[i]
        self._n = 0
        enable_irq(st)
        return self.decode(n)

    def decode(self, n):
        if n == 26:
            half = 13  # P + 12 data bits | 12 data bits + P
            fac_bits = 8
        elif n == 34:
            half = 17
            fac_bits = 16
        else:
            self.bad_length += 1  # truncated, overlong or an unsupported format
            return None
        if self._ones(0, half) & 1 or not self._ones(half, half) & 1:
            self.bad_parity += 1  # first half must be even, second half odd
            return None
        data_bits = n - 2
        facility = self._field(1, fac_bits)
        card = self._field(1 + fac_bits, data_bits - fac_bits)
        raw = bytearray(data_bits // 8)
        for i in range(len(raw)):
            raw[i] = self._field(1 + 8 * i, 8)
        self.frames += 1
        return (n, facility, card, bytes(raw))


def _ticks_ms():
    return int(time.monotonic() * 1000)


def _ticks_diff(a, b):
    return a - b
