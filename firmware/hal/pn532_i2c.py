# PN532 bus adapter for I2C (chip logic in hal.pn532). NXP PN532 User Manual UM0701-02 section
# 6.2.4 and PN532 datasheet 8.3.2: 7-bit address 0x24; every read transaction starts with a
# status byte whose bit 0 says whether a frame is ready; the frame follows in the same read.
# While busy or asleep the PN532 may not acknowledge its address: that is "not ready", not an
# error. Buffers are preallocated; `i2c` is a machine.I2C-like object.

_ADDR = 0x24


class PN532I2C:
    def __init__(self, i2c, addr=_ADDR, max_frame=48):
        self.i2c = i2c
        self.addr = addr
        self._st = bytearray(1)
        self._buf = bytearray(max_frame + 1)
        self._bufv = memoryview(self._buf)
        self.nak = 0  # address not acknowledged (busy) count

    def write(self, data):
        self.i2c.writeto(self.addr, data)

    def ready(self):
        try:
            self.i2c.readfrom_into(self.addr, self._st)
        except OSError:
            self.nak += 1
            return False
        return bool(self._st[0] & 0x01)

    def read(self, buf, n):
        """One read of status + n frame bytes into buf[0:n]; returns n, or 0 if not ready."""
        n = min(n, len(self._buf) - 1, len(buf))
        v = self._bufv[: n + 1]
        self.i2c.readfrom_into(self.addr, v)
        if not v[0] & 0x01:
            return 0
        for i in range(n):
            buf[i] = v[i + 1]
        return n
