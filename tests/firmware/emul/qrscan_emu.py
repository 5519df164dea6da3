# Serial QR scanner module emulator at the UART level: a machine.UART-like object (any(),
# readinto(), read(), write()) whose receive FIFO is filled by a scanner module that "decodes" a
# code and sends it as text + suffix at the configured baud rate, one byte every 10 bit times
# (8N1), on a virtual Clock (buses.Clock). What has not arrived yet by the clock cannot be read;
# the hardware FIFO is bounded (the ESP32's UART RX FIFO is 128 bytes before the driver's ring
# buffer; `rxbuf` models the ring buffer machine.UART(rxbuf=...) gives) and overflows drop bytes.
# Runs under CPython and the MicroPython unix port.


class ScannerUART:
    def __init__(self, clock, baud=9600, rxbuf=256):
        self.clock = clock
        self.us_per_byte = 10 * 1000000 // baud
        self.rxbuf = rxbuf
        self.pending = []  # [arrival time us, byte], in order
        self.fifo = bytearray()
        self.overruns = 0
        self.written = bytearray()  # what the board sent to the module (commands)

    def _now(self):
        n = self.clock.now_us  # buses.Clock: an attribute; machine_shim.RealClock: a method
        return n() if callable(n) else n

    def scan(self, text, suffix=b"\r", gap_us=0):
        """The module decodes `text` now (+ gap_us) and starts sending it."""
        if isinstance(text, str):
            text = text.encode()
        t = max(self._now() + gap_us,
                self.pending[-1][0] if self.pending else 0)
        for b in bytes(text) + suffix:
            t += self.us_per_byte
            self.pending.append([t, b])

    def _arrive(self):
        now = self._now()
        i = 0
        while i < len(self.pending) and self.pending[i][0] <= now:
            if len(self.fifo) < self.rxbuf:
                self.fifo.append(self.pending[i][1])
            else:
                self.overruns += 1
            i += 1
        if i:
            self.pending = self.pending[i:]

    def any(self):
        self._arrive()
        return len(self.fifo)

    def readinto(self, buf, nbytes=None):
        self._arrive()
        n = min(len(buf) if nbytes is None else nbytes, len(self.fifo))
        if not n:
            return None  # machine.UART: None when nothing came before the timeout
        buf[:n] = self.fifo[:n]
        self.fifo = self.fifo[n:]
        return n

    def read(self, n=-1):
        self._arrive()
        if not self.fifo:
            return None
        n = len(self.fifo) if n < 0 else min(n, len(self.fifo))
        out = bytes(self.fifo[:n])
        self.fifo = self.fifo[n:]
        return out

    def write(self, data):
        self.written += data
        return len(data)

    def wait_sent(self):
        """Let the clock run until every byte queued has arrived."""
        if self.pending:
            self.clock.sleep_us(self.pending[-1][0] - self._now())
