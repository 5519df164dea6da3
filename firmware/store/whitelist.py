# Whitelist file, format 1 (protocol.md). The list can hold 50k cards (600 KB), far more than RAM,
# so a lookup is a binary search that reads one 12-byte record at a time into a preallocated buffer.
import struct

MAGIC = b"QWL1"
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
        try:
            hdr = self._f.read(HEADER_SIZE)
            if len(hdr) != HEADER_SIZE:
                raise WhitelistError("short header (%d bytes)" % len(hdr))
            if hdr[0:4] != MAGIC:
                raise WhitelistError("bad magic %r" % bytes(hdr[0:4]))
            fmt, rsize, version, count, crc = struct.unpack("<HHIII", hdr[4:20])
            if fmt != 1:
                raise WhitelistError("unsupported format %d" % fmt)
            if rsize != RECORD_SIZE:
                raise WhitelistError("bad record size %d" % rsize)
            self.version = version
            self.count = count
            self.rec = bytearray(RECORD_SIZE)  # last record read; valid after a hit
            if verify_crc:
                self._verify(crc)
        except Exception:
            self._f.close()
            raise

    def _verify(self, crc):
        # Check length and CRC once at load, so a truncated or corrupt download is refused as a
        # whole instead of answering some lookups wrongly.
        import binascii
        buf = bytearray(RECORD_SIZE * 32)
        mv = memoryview(buf)
        left = self.count * RECORD_SIZE
        c = 0
        while left:
            n = self._f.readinto(mv[: min(left, len(buf))])
            if not n:
                raise WhitelistError("truncated: %d record bytes missing" % left)
            c = binascii.crc32(mv[:n], c)
            left -= n
        if self._f.read(1):
            raise WhitelistError("trailing bytes after %d records" % self.count)
        if (c & 0xFFFFFFFF) != crc:
            raise WhitelistError("record CRC mismatch")

    def _read(self, i):
        f = self._f
        f.seek(HEADER_SIZE + i * RECORD_SIZE)
        if f.readinto(self.rec) != RECORD_SIZE:
            raise WhitelistError("short read at record %d" % i)
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


def open_whitelist(path):
    """(whitelist or None, reason-if-None). Missing file and bad file are both 'deny all'."""
    try:
        return Whitelist(path), None
    except OSError:
        return None, "no_whitelist"
    except WhitelistError as e:
        print("# whitelist %s rejected: %s" % (path, e))
        return None, "bad_whitelist"
