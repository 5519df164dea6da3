# Balance pushes to a canteen board (protocol.md "Canteen balances", D15). The cloud sends the
# balances of the school's cardholders in chunks on {prefix}/v1/dev/{device}/bal; they are
# streamed to canteen.bpt, checked (order, count, CRC) as they come, and only a complete push is
# installed: canteen.bal.new is built from it minus this board's charges after the push's
# watermark, then renamed over canteen.bal (a power cut leaves the old or the new file).
# Imported only while a push arrives, then unloaded (app.canteen), to keep the heap small.
import binascii
import os
import struct

from app.canteen_core import BAL, CRD, PART, pending

MAGIC = b"QBC1"
# magic, chunk index, chunk count, version, watermark boot, watermark seq, floor (tiyn, <= 0),
# records in the push, CRC-32 of all record bytes, index of this chunk's first record
HDR = "<4sHHIIIiIII"
HSIZE = 36
MAX_DATA = 4092  # record bytes per chunk (341 records; the cloud sends 85, 1020 bytes)
MAX_RECS = 16384  # 196 KB on flash


class BalError(Exception):
    pass


def _replace(src, dst):
    try:
        os.rename(src, dst)  # atomic on POSIX and LittleFS
    except OSError:
        os.remove(dst)  # FAT refuses to rename onto an existing file
        os.rename(src, dst)


class Assembler:
    """One push. feed() each chunk in arrival order; True when complete and verified."""

    def __init__(self, d):
        self.d = d
        self.key = None  # (count, version, boot, seq, floor, records, crc) of the push
        self.f = None
        self.next = self.got = self.crc = 0
        self.last = None  # the previous record's key: the records must be strictly ascending

    def abort(self):
        if self.f is not None:
            self.f.close()
            self.f = None
        self.key = None
        try:
            os.remove(self.d + PART)
        except OSError:
            pass

    def feed(self, payload):
        mv = memoryview(payload)
        if len(mv) < HSIZE or bytes(mv[:4]) != MAGIC:
            raise BalError("bad_chunk")
        _, idx, cnt, ver, wb, ws, floor, n, crc, first = struct.unpack(HDR, mv[:HSIZE])
        data = mv[HSIZE:]
        k = len(data) // 12
        if (not cnt or idx >= cnt or n > MAX_RECS or floor > 0 or len(data) % 12
                or len(data) > MAX_DATA or first + k > n or (not k and n)):
            raise BalError("bad_chunk")
        key = (cnt, ver, wb, ws, floor, n, crc)
        if idx == 0:
            self.abort()
            self.key = key
            self.f = open(self.d + PART, "wb")
            self.next = self.got = self.crc = 0
            self.last = None
        elif key != self.key or idx < self.next:
            return False  # another push whose start we missed, or a re-delivered chunk
        if idx != self.next or first != self.got:
            self.abort()
            raise BalError("gap")
        for i in range(0, k * 12, 12):
            kk = bytes(data[i:i + 8])
            if self.last is not None and kk <= self.last:
                self.abort()
                raise BalError("order")
            self.last = kk
        self.f.write(data)
        self.crc = binascii.crc32(data, self.crc)
        self.got += k
        self.next += 1
        if self.next < cnt:
            return False
        self.f.close()
        self.f = None
        if self.got != n or self.crc & 0xFFFFFFFF != crc:
            self.abort()
            raise BalError("size" if self.got != n else "crc")
        return True


def install(book, key):
    """Install canteen.bpt as canteen.bal: key = (version, watermark boot, seq, floor). The
    board's own charges after the watermark are not in the pushed balances yet: subtract them
    (and keep them in canteen.crd until a later push covers them)."""
    ver, wb, ws, floor = key
    d = book.d
    if wb < book.wb or (wb == book.wb and ws < book.ws):
        os.remove(d + PART)
        raise BalError("stale")  # older than what is installed: its charges were dropped
    p = pending(d + CRD, wb, ws)
    b = bytearray(12)
    with open(d + PART, "rb") as src, open(d + BAL + ".new", "wb") as dst:
        dst.write(b"QCB1" + struct.pack("<IIIi", ver, wb, ws, floor))
        while src.readinto(b) == 12:
            a = p.get((b[0] | b[1] << 8 | b[2] << 16 | b[3] << 24) or 1)
            if a:
                struct.pack_into("<i", b, 8, struct.unpack_from("<i", b, 8)[0] - a)
            dst.write(b)
    if p:  # keep the charges after the watermark, drop the rest (the cloud has them)
        with open(d + CRD, "rb") as src, open(d + CRD + ".new", "wb") as dst:
            r = bytearray(16)
            while src.readinto(r) == 16:
                _, bt, sq, _ = struct.unpack("<IIII", r)
                if bt > wb or (bt == wb and sq > ws):
                    dst.write(r)
    # canteen.bal first: its header's watermark makes any older canteen.crd entries ignored,
    # so a power cut between the two renames loses nothing and counts nothing twice.
    _replace(d + BAL + ".new", d + BAL)
    if p:
        _replace(d + CRD + ".new", d + CRD)
    else:
        try:
            os.remove(d + CRD)
        except OSError:
            pass
    os.remove(d + PART)
    book.ver, book.wb, book.ws, book.floor = ver, wb, ws, floor
    book.credit = p
