# A keypad on the Wiegand reader (most Wiegand readers with keys: HID, ZKTeco, generic 125 kHz /
# 13.56 MHz units). A key press is a short frame: 4 bits (the key code, no parity) or 8 bits (the
# key code in the low nibble, its complement in the high one). Codes 0-9 are the digits, 10 is
# `*`, 11 is `#` (hal.keypad.PinPad takes them). The same D0/D1 lines carry the card frames
# (26/34 bits), so KeypadWiegand decodes both.
from hal.wiegand import Wiegand


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
