# MFRC522 bus adapter for SPI: maps the register interface used by hal.mfrc522 (read_reg,
# write_reg, read_fifo, write_fifo) onto SPI frames. Chip logic lives in hal.mfrc522, like
# ESPHome's rc522 vs rc522_spi.
#
# NXP MFRC522 datasheet section 8.1.2: address byte = 0 (write) / 1 (read) in bit 7, register
# address in bits 6..1, bit 0 = 0, i.e. (reg << 1) & 0x7E, | 0x80 for a read. A read of n bytes
# clocks out n address bytes then 0x00; MISO byte i+1 carries the value addressed by MOSI byte i.
# A write sends the address once, then any number of data bytes for that register (FIFO burst).
# Mode 0, MSB first, up to 10 Mbit/s.

_FIFO_DATA = 0x09
_FIFO_RD = ((_FIFO_DATA << 1) & 0x7E) | 0x80
_FIFO_WR = (_FIFO_DATA << 1) & 0x7E


class MFRC522SPI:
    """`spi` is a machine.SPI-like object (write, write_readinto); `cs` a Pin (value()).
    Every register access is one chip-select window; buffers are preallocated."""

    def __init__(self, spi, cs, max_fifo=64):
        self.spi = spi
        self.cs = cs
        cs.value(1)
        self._tx = bytearray(2)
        self._rx = bytearray(2)
        self._a = bytearray(1)
        self._a[0] = _FIFO_WR
        self._ftx = bytearray(max_fifo + 1)
        self._frx = bytearray(max_fifo + 1)
        self._ftxv = memoryview(self._ftx)
        self._frxv = memoryview(self._frx)

    def write_reg(self, reg, val):
        tx = self._tx
        tx[0] = (reg << 1) & 0x7E
        tx[1] = val
        self.cs.value(0)
        try:
            self.spi.write(tx)
        finally:
            self.cs.value(1)

    def read_reg(self, reg):
        tx = self._tx
        tx[0] = ((reg << 1) & 0x7E) | 0x80
        tx[1] = 0
        self.cs.value(0)
        try:
            self.spi.write_readinto(tx, self._rx)
        finally:
            self.cs.value(1)
        return self._rx[1]

    def write_fifo(self, data):
        """Burst-write `data` (any buffer) into FIFODataReg in one transaction."""
        self.cs.value(0)
        try:
            self.spi.write(self._a)
            self.spi.write(data)
        finally:
            self.cs.value(1)

    def read_fifo(self, buf, n):
        """Burst-read n bytes from FIFODataReg into buf[0:n] in one transaction."""
        if n <= 0:
            return 0
        if n >= len(self._ftx):
            n = len(self._ftx) - 1
        tx = self._ftx
        for i in range(n):
            tx[i] = _FIFO_RD
        tx[n] = 0
        self.cs.value(0)
        try:
            self.spi.write_readinto(self._ftxv[: n + 1], self._frxv[: n + 1])
        finally:
            self.cs.value(1)
        rx = self._frx
        for i in range(n):
            buf[i] = rx[i + 1]
        return n
