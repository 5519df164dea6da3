# The simulated board's QR scanner and keypad (hal.sim commands, loaded at the first use):
#   "qr <text> [reader]"   the scanner module decodes <text>: its bytes and a CR arrive on the
#                          scanner's UART and the real driver (hal.qrscan) reads them
#   "keys <keys> [reader]" keys pressed on the Wiegand keypad, e.g. "1234#5678#" (hal.keypad's
#                          PinPad assembles the entry; the Wiegand bit level is tested in the VM)
# What the driver reads goes to app.altid as on a board. Made at boot (setup) on a board whose
# device.json says "altid": true; without it both commands are ignored ("no_altid").
from compat import emit, ticks_ms

_sc = None  # hal.qrscan.QRScanner on _UART
_pad = None  # hal.keypad.PinPad


class _UART:
    # machine.UART's receive side as the driver uses it: any(), readinto().
    def __init__(self):
        self.rx = bytearray()

    def any(self):
        return len(self.rx)

    def readinto(self, buf):
        n = min(len(buf), len(self.rx))
        if not n:
            return None
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n


def setup():
    # At boot (app.altid.setup): the driver and the keypad's entry, made once.
    global _sc, _pad
    from hal.keypad import PinPad
    from hal.qrscan import QRScanner
    _sc = QRScanner(_UART())
    _pad = PinPad()


def command(app, parts):
    if _sc is None:  # the board has no alternative identification (device.json "altid")
        emit("ignored", {"why": "no_altid"})
        return
    import app.altid as alt
    reader = parts[2] if len(parts) == 3 else None
    if parts[0] == "qr":
        _sc.uart.rx += parts[1].encode() + b"\r"
        while True:
            line = _sc.poll()
            if line is None:
                break
            alt.qr(app.door, line, reader)
        return
    for ch in parts[1]:
        code = 10 if ch == "*" else 11 if ch == "#" else ord(ch) - 48
        got = _pad.key(code, ticks_ms())
        if got is not None:
            alt.pin(app.door, got[0], got[1], reader)
    if _pad.nn or _pad.np >= 0:
        emit("keypad", {"typed": _pad.nn + max(_pad.np, 0)})
