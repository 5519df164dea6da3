# Canteen helpers (app.canteen): money in tiyn, civil dates, the served-this-period table and
# the balances / offline credit kept on flash. Split from app.canteen so each module compiles
# in a small heap.
import struct

SRV, CRD, BAL = "canteen.srv", "canteen.crd", "canteen.bal"
CATS = ("paid", "free", "reduced", "paid")  # whitelist attrs bits 2-3; 0 (none) pays


def money(s):
    """'650' / '650.5' / 650 -> tiyn (int); ValueError if not a non-negative amount."""
    s = str(s)
    a, _, b = s.partition(".")
    if not a.isdigit() or (b and not b.isdigit()) or len(b) > 2:
        raise ValueError(s)
    return int(a) * 100 + int((b + "00")[:2])


def fmt(v):
    return ("-" if v < 0 else "") + ("%d" % (abs(v) // 100) if v % 100 == 0
                                     else "%d.%02d" % (abs(v) // 100, abs(v) % 100))


def _hm(s):
    h, m = s.split(":")
    return int(h) * 60 + int(m)


def date_of(day):
    """Days since 1970-01-01 -> 'YYYY-MM-DD' (civil calendar, no time module needed)."""
    z = day + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return "%04d-%02d-%02d" % (yoe + era * 400 + (m <= 2), m, d)


class Served:
    """Cards served in the current meal period: open addressing over 4-byte key tags in one
    bytearray (`slots` x 4 bytes), mirrored to canteen.srv (header day u32 + period u8, then the
    tags appended). A reboot in the same period reloads it; another period clears it."""

    def __init__(self, slots=1024, path=SRV):
        self.n = slots
        self.t = bytearray(slots * 4)
        self.used = 0
        self.path = path
        self.pk = None
        try:
            with open(path, "rb") as f:
                h = f.read(5)
                if len(h) == 5:
                    self.pk = struct.unpack("<IB", h)
                    while True:
                        b = f.read(4)
                        if len(b) < 4:
                            break  # a torn tail: that grant was never shown (write first)
                        self._put(struct.unpack("<I", b)[0])
        except OSError:
            pass

    def period(self, pk):
        if pk != self.pk:
            self.pk = pk
            self.t = bytearray(self.n * 4)
            self.used = 0
            with open(self.path, "wb") as f:
                f.write(struct.pack("<IB", pk[0], pk[1]))

    def _slot(self, tag):
        i = tag % self.n
        t = self.t
        for _ in range(self.n):
            v = struct.unpack_from("<I", t, i * 4)[0]
            if v == tag or v == 0:
                return i, v
            i = (i + 1) % self.n
        return -1, 0

    def _put(self, tag):
        i, v = self._slot(tag)
        if i < 0 or v:
            return i >= 0
        struct.pack_into("<I", self.t, i * 4, tag)
        self.used += 1
        return True

    @staticmethod
    def tag(key):
        return (key[0] | key[1] << 8 | key[2] << 16 | key[3] << 24) or 1

    def has(self, key):
        i, v = self._slot(self.tag(key))
        return i >= 0 and v != 0

    def add(self, key):
        tag = self.tag(key)
        with open(self.path, "ab") as f:
            f.write(struct.pack("<I", tag))
        if not self._put(tag):
            print("# canteen: served table full")


class Book:
    """Balances (canteen.bal: sorted 12-byte records, card key 8 + i32 tiyn; a paid meal is
    written in place) and offline credit used since the last balance sync (canteen.crd: appended
    tag u32 + tiyn u32 records; summed into a dict at start)."""

    def __init__(self, d):
        self.d = d
        self.credit = {}
        try:
            with open(self.d + CRD, "rb") as f:
                while True:
                    b = f.read(8)
                    if len(b) < 8:
                        break
                    tag, a = struct.unpack("<II", b)
                    self.credit[tag] = self.credit.get(tag, 0) + a
        except OSError:
            pass

    def write(self, bal):
        import binascii
        import os
        keys = sorted(bal)
        tmp = self.d + BAL + ".tmp"
        with open(tmp, "wb") as f:
            for k in keys:
                f.write(binascii.unhexlify(k) + struct.pack("<i", money(bal[k])))
        os.rename(tmp, self.d + BAL)
        # A sync: the cloud's balances include what was eaten on credit (events acked first).
        self.credit = {}
        try:
            os.remove(self.d + CRD)
        except OSError:
            pass

    def balance(self, key):
        """-> (file offset of the record, tiyn) or (-1, None) if the balance is unknown."""
        try:
            f = open(self.d + BAL, "rb")
        except OSError:
            return -1, None
        with f:
            f.seek(0, 2)
            lo, hi = 0, f.tell() // 12 - 1
            b = bytearray(12)
            k = bytes(key)
            while lo <= hi:
                mid = (lo + hi) >> 1
                f.seek(mid * 12)
                f.readinto(b)
                kk = bytes(b[:8])
                if kk == k:
                    return mid * 12, struct.unpack_from("<i", b, 8)[0]
                if kk < k:
                    lo = mid + 1
                else:
                    hi = mid - 1
        return -1, None

    def pay(self, off, bal):
        with open(self.d + BAL, "r+b") as f:
            f.seek(off + 8)
            f.write(struct.pack("<i", bal))

    def owe(self, key, used, amount):
        tag = Served.tag(key)
        self.credit[tag] = used
        with open(self.d + CRD, "ab") as f:
            f.write(struct.pack("<II", tag, amount))
