# Whitelist file, format 1 (protocol.md). The list can hold 50k cards (600 KB), far more than RAM,
# so a lookup is a binary search that reads one 12-byte record at a time into a preallocated buffer.
from compat import unload

HEADER_SIZE = 32
RECORD_SIZE = 12
KEY_SIZE = 8


class WhitelistError(Exception):
    pass


class Whitelist:
    def __init__(self, path, verify_crc=True):
        self.path = path
        self.reads = 0  # record reads, for tests and diagnostics
        self._f = open(path, "rb")
        self.rec = bytearray(RECORD_SIZE)  # last record read; valid after a hit
        # The header checks and the CRC pass run once per list (boot, update): in a module of
        # their own, loaded for them and dropped again (its functions and error messages would
        # otherwise stay in the heap for good; docs/decisions.md D16).
        import store.wlcheck
        try:
            store.wlcheck.check(self, verify_crc)
        except Exception:
            self._f.close()
            raise
        finally:
            unload(store.wlcheck)

    def _read(self, i):
        f = self._f
        f.seek(HEADER_SIZE + i * RECORD_SIZE)
        if f.readinto(self.rec) != RECORD_SIZE:
            raise WhitelistError("short read", i)
        self.reads += 1

    def _cmp(self, key):
        # Bytewise compare without slicing (no allocation in the tap path).
        rec = self.rec
        for j in range(KEY_SIZE):
            d = key[j] - rec[j]
            if d:
                return d
        return 0

    def lookup(self, key):
        """True if the 8-byte key is listed; then self.rec holds its record."""
        lo = 0
        hi = self.count - 1
        while lo <= hi:
            mid = (lo + hi) >> 1
            self._read(mid)
            d = self._cmp(key)
            if d == 0:
                return True
            if d > 0:
                lo = mid + 1
            else:
                hi = mid - 1
        return False

    def attrs(self):
        return self.rec[8]

    def profile(self):
        return self.rec[9]

    def allergens(self):
        return self.rec[10] | (self.rec[11] << 8)

    def close(self):
        self._f.close()

