# Delta merge for whitelist updates (protocol.md "Whitelist updates", delta): the running
# whitelist.bin + a delta file -> whitelist.new, streaming (a few hundred bytes of RAM whatever the
# list size), yielding to the event loop so taps go on with the old list meanwhile. Split from
# store/wlupdate.py so each module compiles in a 64 KiB heap; imported only when a delta arrives.
import binascii
import struct

from compat import sleep_ms

from store.wlupdate import HDR_SIZE, WlError


def _cmp(a, b, n):
    for j in range(n):
        d = a[j] - b[j]
        if d:
            return d
    return 0


class _Rd:
    # Reads fixed-size records from a file through a small block buffer; next() returns a
    # memoryview valid until the following next().
    def __init__(self, f, off, n, size, per=16):
        self.f = f
        self.left = n
        self.size = size
        self.buf = bytearray(size * per)
        self.mv = memoryview(self.buf)
        self.pos = self.end = 0
        if f is not None:
            f.seek(off)

    def next(self):
        if self.pos >= self.end:
            if not self.left:
                return None
            k = min(self.left, len(self.buf) // self.size) * self.size
            got = self.f.readinto(self.mv[:k])
            if got != k:
                raise WlError("short_read")
            self.left -= k // self.size
            self.pos, self.end = 0, k
        p = self.pos
        self.pos = p + self.size
        return self.mv[p:self.pos]



async def merge(live, part, new, hdr):
    # old whitelist.bin + delta -> whitelist.new, streaming: three 16-record read buffers and
    # one write buffer, whatever the list size. Yields to the event loop so taps go on (with
    # the old list) while it runs.
    _, _, _, ver, nrem, nadd, rcount, rcrc = struct.unpack_from("<HHIIIIII", hdr, 4)
    try:
        of = open(live, "rb")
        ohdr = of.read(HDR_SIZE)
        on = struct.unpack_from("<I", ohdr, 12)[0] if len(ohdr) == HDR_SIZE else 0
    except OSError:
        of, on = None, 0
    df = open(part, "rb")
    af = open(part, "rb")
    out = open(new, "wb")
    try:
        out.write(b"QWL1" + struct.pack("<HHIII", 1, 12, ver, rcount, rcrc) + bytes(12))
        old = _Rd(of, HDR_SIZE, on, 12)
        rem = _Rd(df, HDR_SIZE, nrem, 8)
        add = _Rd(af, HDR_SIZE + nrem * 8, nadd, 12)
        wb = bytearray(12 * 16)
        wp = 0
        n = crc = 0
        o, r, a = old.next(), rem.next(), add.next()
        while o is not None or a is not None:
            if o is not None and (a is None or _cmp(o, a, 8) < 0):
                while r is not None and _cmp(r, o, 8) < 0:
                    r = rem.next()
                if r is not None and _cmp(r, o, 8) == 0:
                    r = rem.next()  # removed
                    o = old.next()
                    continue
                rec, fa = o, False
            else:
                if o is not None and _cmp(o, a, 8) == 0:
                    o = old.next()  # replaced by the added record
                rec, fa = a, True
            wb[wp:wp + 12] = rec
            wp += 12
            if fa:
                a = add.next()
            else:
                o = old.next()
            if wp == len(wb):
                out.write(wb)
                crc = binascii.crc32(wb, crc)
                wp = 0
                await sleep_ms(0)
            n += 1
        if wp:
            out.write(memoryview(wb)[:wp])
            crc = binascii.crc32(memoryview(wb)[:wp], crc)
    finally:
        out.close()
        df.close()
        af.close()
        if of is not None:
            of.close()
    if n != rcount or crc & 0xFFFFFFFF != rcrc:
        raise WlError("merge")
