# A keypad on the Wiegand reader (most Wiegand readers with keys: HID, ZKTeco, generic 125 kHz /
# 13.56 MHz units). A key press is a short frame: 4 bits (the key code, no parity) or 8 bits (the
# key code in the low nibble, its complement in the high one). Codes 0-9 are the digits, 10 is
# `*`, 11 is `#`. The same D0/D1 lines carry the card frames (26/34 bits), so KeypadWiegand
# decodes both. PinPad assembles an entry: the pupil number, `#`, the PIN, `#`; `*` clears it,
# and a pause longer than `timeout_ms` between keys drops what was typed.
from hal.wiegand import Wiegand

STAR = 10
HASH = 11


class KeypadWiegand(Wiegand):
    """poll() also returns (4 or 8, 0, key code, b"") for a key press."""

    def decode(self, n):
        if n == 4:
            self.frames += 1
            return (4, 0, self._field(0, 4), b"")
        if n == 8:
            hi = self._field(0, 4)
            lo = self._field(4, 4)
            if hi != lo ^ 0xF:
                self.bad_parity += 1
                return None
            self.frames += 1
            return (8, 0, lo, b"")
        return Wiegand.decode(self, n)


class PinPad:
    """key(code, now_ms) -> None, or (number, pin) as ASCII digits when `#` ends the PIN."""

    def __init__(self, timeout_ms=10000, max_number=12, max_pin=8, ticks_diff=None):
        self.timeout_ms = timeout_ms
        self.num = bytearray(max_number)
        self.pin = bytearray(max_pin)
        self.nn = 0
        self.np = -1  # -1: typing the number; >= 0: the PIN's digits so far
        self.last = 0
        self.bad = 0  # entries dropped: too long, empty
        if ticks_diff is None:
            from compat import ticks_diff
        self._diff = ticks_diff

    def clear(self):
        self.nn = 0
        self.np = -1

    def key(self, code, now):
        if (self.nn or self.np >= 0) and self._diff(now, self.last) > self.timeout_ms:
            self.clear()  # a half-typed entry left standing is not continued by the next person
        self.last = now
        if code == STAR:
            self.clear()
            return None
        if code == HASH:
            if self.np < 0:
                if self.nn:
                    self.np = 0
                else:
                    self.bad += 1
                return None
            got = None
            if self.np:
                got = (bytes(self.num[:self.nn]), bytes(self.pin[:self.np]))
            else:
                self.bad += 1
            self.clear()
            return got
        if not 0 <= code <= 9:
            return None
        d = 48 + code
        if self.np < 0:
            if self.nn < len(self.num):
                self.num[self.nn] = d
                self.nn += 1
                return None
        elif self.np < len(self.pin):
            self.pin[self.np] = d
            self.np += 1
            return None
        self.bad += 1  # too many digits: the entry is void
        self.clear()
        return None
