# PIN entry on a keypad (D29-J): key codes 0-9 are the digits, 10 is `*`, 11 is `#` (as Wiegand
# keypads send them, hal.wgkeys). PinPad assembles an entry: the pupil number, `#`, the PIN, `#`;
# `*` clears it, and a pause longer than `timeout_ms` between keys drops what was typed.
STAR = 10
HASH = 11


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
