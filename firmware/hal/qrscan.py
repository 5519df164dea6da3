# Serial QR/barcode scanner module (GM65/GM805-class, and most UART scanner engines): in its
# "serial output" mode it sends each decoded code as text followed by CR (or CR LF, or LF), at
# 9600 baud 8N1 by default. The driver takes a UART object (machine.UART on the board, the
# emulator's in tests), never pins, reads what has arrived without waiting into preallocated
# buffers and hands out whole lines. A line longer than `maxlen` is dropped whole (counted), as
# is noise between codes: our codes are ~40 characters, a too-long line is not one of them.


class QRScanner:
    """poll() -> one complete line (bytes, without the terminator) or None; never blocks."""

    def __init__(self, uart, maxlen=96):
        self.uart = uart
        self.buf = bytearray(maxlen)  # the line being assembled
        self.n = 0
        self.skip = False  # inside a too-long line: drop up to its terminator
        self.chunk = bytearray(32)  # bytes read from the UART and not yet taken
        self.ci = 0
        self.cn = 0
        self.lines = 0
        self.too_long = 0

    def poll(self):
        while True:
            if self.ci >= self.cn:
                u = self.uart
                if not u.any():
                    return None
                got = u.readinto(self.chunk)
                if not got:
                    return None
                self.ci = 0
                self.cn = got
            c = self.chunk[self.ci]
            self.ci += 1
            if c == 13 or c == 10:  # CR or LF ends a line; the LF of a CR LF ends an empty one
                n = self.n
                self.n = 0
                if self.skip:
                    self.skip = False
                    continue
                if n:
                    self.lines += 1
                    return bytes(self.buf[:n])
            elif self.skip:
                pass
            elif self.n < len(self.buf):
                self.buf[self.n] = c
                self.n += 1
            else:
                self.too_long += 1
                self.skip = True
                self.n = 0
