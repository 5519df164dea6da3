# Alternative identification's front-ends for the ESP32 adapter (hal.esp32; D29-J, docs/altid.md),
# polled by its reader tasks like the card readers (hal.readers), with one difference: what
# poll() returns goes to deliver(app, value), not to app.tap:
# - board.json "qr_scanners": [{"reader": "in", "uart": {"id": 2, "rx": 16, "tx": 17}}]: a
#   serial QR scanner (hal.qrscan) on a machine.UART; a line goes to app.altid.qr;
# - a Wiegand reader with "keypad": true (hal.wgkeys): card frames go to app.tap as before, key
#   frames to a PIN entry (hal.keypad) whose finished entries go to app.altid.pin.
from compat import ticks_ms


class QRScanReader:
    kind = "qrscan"
    period_ms = 50  # a code at 9600 baud takes ~40 ms to arrive; the UART buffers it meanwhile

    def __init__(self, name, uart):
        from hal.qrscan import QRScanner

        self.name = name
        self.drv = QRScanner(uart)

    def init(self):
        return None

    def poll(self):
        return self.drv.poll()

    def deliver(self, a, line):
        import app.altid
        app.altid.qr(a.door, line, self.name)


class KeypadReader:
    kind = "wiegand"
    period_ms = 50

    def __init__(self, name, bits, d0, d1, reverse=False):
        from hal.keypad import PinPad
        from hal.wgkeys import KeypadWiegand

        self.name = name
        self.bits = bits
        self.reverse = reverse
        self.wrong_format = 0
        self.drv = KeypadWiegand(d0, d1)
        self.pad = PinPad()

    def init(self):
        return None

    def poll(self):
        f = self.drv.poll()
        if f is None:
            return None
        if f[0] == 4 or f[0] == 8:
            return self.pad.key(f[2], ticks_ms())  # (number, PIN) when `#` ends the entry
        if f[0] != self.bits:
            self.wrong_format += 1
            return None
        from hal.readers import normalise_uid
        return normalise_uid("wiegand", f[3], self.reverse)

    def deliver(self, a, v):
        if isinstance(v, tuple):
            import app.altid
            app.altid.pin(a.door, v[0], v[1], self.name)
        else:
            a.tap(v, self.name)


def make(rc, Pin, machine):
    """The front-end of a board.json readers[] entry with "keypad", or of a qr_scanners[] one."""
    if "uart" in rc:
        u = rc["uart"]
        kw = {"baudrate": u.get("baudrate", 9600), "rx": Pin(u["rx"]), "rxbuf": 256}
        if u.get("tx") is not None:
            kw["tx"] = Pin(u["tx"])
        return QRScanReader(rc["reader"], machine.UART(u.get("id", 2), **kw))
    p = rc["pins"]
    return KeypadReader(rc["reader"], 26 if rc["type"] == "wiegand26" else 34,
                        Pin(p["d0"], Pin.IN), Pin(p["d1"], Pin.IN))
