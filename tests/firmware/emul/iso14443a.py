# ISO/IEC 14443-3 type A card model for the reader emulators (MFRC522 over SPI, PN532 over I2C):
# REQA/WUPA, bitwise anticollision and SELECT for cascade levels 1..3, HLTA, CRC_A.
# CPython and MicroPython compatible.


def crc_a(data, crc=0x6363):
    """ISO/IEC 14443-3 CRC_A: reflected polynomial 0x8408 (x^16 + x^12 + x^5 + 1), init 0x6363."""
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def _bits(data, n):
    """First n bits of data, LSB first (air order)."""
    return [(data[i >> 3] >> (i & 7)) & 1 for i in range(n)]


class Card:
    """A PICC with a 4, 7 or 10 byte UID. States: idle, ready (at cascade `level`), active, halt."""

    def __init__(self, uid, sak=0x08):
        self.uid = bytes(uid)
        n = len(uid)
        if n not in (4, 7, 10):
            raise ValueError("uid length")
        self.levels = {4: 1, 7: 2, 10: 3}[n]
        self.atqa = bytes([((self.levels - 1) << 6) | 0x04, 0x00])  # UID size bits 7..6
        self.sak = sak
        self.state = "idle"
        self.level = 0
        self.cl = []
        u = self.uid
        parts = [u] if n == 4 else [b"\x88" + u[0:3], u[3:7]] if n == 7 else [
            b"\x88" + u[0:3], b"\x88" + u[3:6], u[6:10]]
        for p in parts:
            self.cl.append(bytes(p) + bytes([p[0] ^ p[1] ^ p[2] ^ p[3]]))

    def answer(self, data, nbits):
        """Bits the card sends back (list of 0/1) or None; updates the card state."""
        st = self.state
        if nbits == 7:
            if (data[0] == 0x26 and st == "idle") or (data[0] == 0x52 and st in ("idle", "halt")):
                self.state, self.level = "ready", 0
                return _bits(self.atqa, 16)
            if st in ("ready", "active"):
                self.state = "idle"  # ISO 14443-3 state machine: unexpected command
            return None
        if st == "active" and len(data) == 4 and data[0] == 0x50 and data[1] == 0:
            if crc_a(data[:2]) == data[2] | (data[3] << 8):
                self.state = "halt"
            return None
        if st != "ready" or len(data) < 2 or data[0] not in (0x93, 0x95, 0x97):
            if st == "ready":
                self.state = "idle"
            return None
        if (0x93, 0x95, 0x97).index(data[0]) != self.level:
            return None
        cl = self.cl[self.level]
        if data[1] == 0x70:  # SELECT
            if len(data) != 9 or crc_a(data[:7]) != data[7] | (data[8] << 8) or data[2:7] != cl:
                self.state = "idle"
                return None
            more = self.level + 1 < self.levels
            sak = 0x04 if more else self.sak
            if more:
                self.level += 1
            else:
                self.state = "active"
            c = crc_a(bytes([sak]))
            return _bits(bytes([sak, c & 0xFF, c >> 8]), 24)
        known = ((data[1] >> 4) - 2) * 8 + (data[1] & 0x0F)  # anticollision: NVB
        if known < 0 or known > 32 or len(data) < 2 + (known + 7) // 8:
            return None
        if _bits(data[2:], known) != _bits(cl, known):
            return None
        return _bits(cl, 40)[known:]
