# Canteen helpers (app.canteen): money in tiyn, civil dates, the served-this-period table and
# the balances / offline credit kept on flash. Split from app.canteen so each module compiles
# in a small heap.
import struct

from compat import unload

SRV, CRD, BAL = "canteen.srv", "canteen.crd", "canteen.bal"
PART = "canteen.bpt"  # a balance push being assembled (app.canteen_bal)
BHDR = 20  # canteen.bal header
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
            # Cleared in place, never allocated again: a second 4 KB table (or a new one while
            # the heap is in pieces) does not fit a small heap after start-up.
            t, z = self.t, bytes(64)
            for i in range(0, len(t), 64):
                k = min(64, len(t) - i)
                t[i:i + k] = z if k == 64 else z[:k]
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
    """Balances and the board's own charges since the balances' watermark (D15).

    canteen.bal: a 20-byte header (magic QCB1, push version u32, watermark boot u32 + seq u32:
    the newest event of this board the cloud had stored when it read the balances, floor i32
    tiyn), then sorted 12-byte records (card key 8 + i32 tiyn), binary-searched; a paid meal is
    written in place. canteen.crd: one 16-byte record per charge made here (tag u32, boot u32,
    seq u32, tiyn u32), appended. Charges after the watermark are not in the pushed balances:
    they are summed per tag into `credit` (the offline credit of a card without a balance) and
    subtracted again from the next push (app.canteen_bal)."""

    def __init__(self, d):
        import os
        self.d = d
        self.ver = self.wb = self.ws = self.floor = 0
        for n in (PART, BAL + ".new", CRD + ".new"):  # a push a reset interrupted: never used
            try:
                os.remove(d + n)
            except OSError:
                pass
        try:
            with open(d + BAL, "rb") as f:
                h = f.read(BHDR)
            if len(h) == BHDR and h[:4] == b"QCB1":
                self.ver, self.wb, self.ws, self.floor = struct.unpack_from("<IIIi", h, 4)
        except OSError:
            pass
        self.credit = pending(d + CRD, self.wb, self.ws)

    def write(self, bal, boot, seq):
        """The `balances` config key: a full replacement as of now (nothing local after it)."""
        import binascii
        with open(self.d + PART, "wb") as f:
            for k in sorted(bal):
                f.write(binascii.unhexlify(k) + struct.pack("<i", money(bal[k])))
        from app.canteen_bal import install
        try:
            install(self, (self.ver, boot, seq, self.floor))
        finally:
            unload("app.canteen_bal")  # loaded only for a push

    def balance(self, key):
        """-> (file offset of the record, tiyn) or (-1, None) if the balance is unknown."""
        try:
            f = open(self.d + BAL, "rb")
        except OSError:
            return -1, None
        with f:
            f.seek(0, 2)
            lo, hi = 0, (f.tell() - BHDR) // 12 - 1
            b = bytearray(12)
            k = bytes(key)
            while lo <= hi:
                mid = (lo + hi) >> 1
                f.seek(BHDR + mid * 12)
                f.readinto(b)
                kk = bytes(b[:8])
                if kk == k:
                    return BHDR + mid * 12, struct.unpack_from("<i", b, 8)[0]
                if kk < k:
                    lo = mid + 1
                else:
                    hi = mid - 1
        return -1, None

    def pay(self, off, bal):
        with open(self.d + BAL, "r+b") as f:
            f.seek(off + 8)
            f.write(struct.pack("<i", bal))

    def charge(self, key, boot, seq, amount, credit):
        # Every charge made here (from the balance or on credit), with its event's identity.
        # `credit` only grows for a meal on credit: it is read for cards without a balance, and
        # a card loses its balance record only by a push, which sums it anew (canteen_bal).
        tag = Served.tag(key)
        if credit:
            self.credit[tag] = self.credit.get(tag, 0) + amount
        with open(self.d + CRD, "ab") as f:
            f.write(struct.pack("<IIII", tag, boot, seq, amount))


def pending(path, wb, ws):
    """tag -> tiyn charged here after the watermark (boot wb, seq ws), from canteen.crd."""
    p = {}
    try:
        with open(path, "rb") as f:
            b = bytearray(16)
            while f.readinto(b) == 16:
                tag, bt, sq, a = struct.unpack("<IIII", b)
                if bt > wb or (bt == wb and sq > ws):
                    p[tag] = p.get(tag, 0) + a
    except OSError:
        pass
    return p
