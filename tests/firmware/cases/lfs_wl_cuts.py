# The whitelist install on MicroPython's LittleFS with power cuts at block level (issue #14 part
# 7): a cut at any program/erase operation of an update (chunks streamed to flash, the delta
# merge, the rename over whitelist.bin) or of the boot after it leaves the old list or the new
# one, whole. VM only; run by tests/firmware/test_lfs_powercut.py (lfs_cuts.py describes the
# flash and the mount). Self-contained and frugal (lists built in place, chunks made one at a
# time) so that it runs in the 64 KiB heap of the firmware cases.
import binascii
import gc
import os
import struct

import vfs
from blockdev import Flash

D = "/flash"
BLOCKS = 64
WCUTS = 300
WSEED = 7121
WOPS = 150  # a cut after 0..WOPS-1 program/erase operations of a boot
LIVE = D + "/whitelist.bin"


class Rng:
    # xorshift32, as in test_fw_journal_powercut.py (not imported: that module loads the journal)
    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFF or 1

    def below(self, n):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x % n


def _count(st, k):
    st[k] = st.get(k, 0) + 1


def _key(k):
    return k.to_bytes(8, "big")  # big-endian: byte order is numeric order


MAXN = 520  # cards a list may hold (buffers allocated once; inserts stop at 450)


def _seal(b, ver, n):
    # -> the list as a memoryview over b (b holds MAXN records).
    mv = memoryview(b)[:32 + 12 * n]
    crc = binascii.crc32(mv[32:]) & 0xFFFFFFFF
    struct.pack_into("<4sHHIII", b, 0, b"QWL1", 1, 12, ver, n, crc)
    for o in range(20, 32):
        b[o] = 0
    return mv


def _first(b, rng):
    # 380 cards (4,592 bytes: more than one 4 KiB sector), random increasing keys.
    n = 380
    k = 0
    for i in range(n):
        k += 1 + rng.below(1 << 30)
        o = 32 + 12 * i
        b[o:o + 8] = _key(k)
        b[o + 8:o + 12] = b"\x01\x00\x00\x00"
    return _seal(b, 1, n)


def _next(old, b, rng):
    # The next version into b: about 1 in 8 cards removed, 1 in 8 with new attributes, 1 in 8
    # gaps get a new card (none above 450 cards).
    n = struct.unpack_from("<I", old, 12)[0]
    prev = 0
    m = 0
    for i in range(n):
        o = 32 + 12 * i
        k = int.from_bytes(old[o:o + 8], "big")
        if k - prev > 1 and n < 450 and rng.below(8) == 0:
            w = 32 + 12 * m
            b[w:w + 8] = _key(prev + 1 + rng.below(k - prev - 1))
            b[w + 8:w + 12] = b"\x01\x00\x00\x00"
            m += 1
        prev = k
        r = rng.below(8)
        if r == 0:
            continue
        w = 32 + 12 * m
        b[w:w + 12] = old[o:o + 12]
        if r == 1:
            b[w + 8] = 1 + rng.below(3)
        m += 1
    assert m <= MAXN
    return _seal(b, struct.unpack_from("<I", old, 8)[0] + 1, m)


def _delta(old, new, b):
    # protocol.md delta into b: header, keys removed, records added or changed (both sorted).
    # -> a memoryview over b.
    na = struct.unpack_from("<I", old, 12)[0]
    nb = struct.unpack_from("<I", new, 12)[0]
    nrem = nadd = 0
    for p in (0, 1):  # count, then write the removed keys after the header, the adds after them
        r = 32
        a_ = 32 + 8 * nrem
        i = j = 0
        while i < na or j < nb:
            ka = old[32 + 12 * i:40 + 12 * i] if i < na else None
            kb = new[32 + 12 * j:40 + 12 * j] if j < nb else None
            if kb is None or (ka is not None and ka < kb):
                if p:
                    b[r:r + 8] = ka
                r += 8
                i += 1
            elif ka is None or kb < ka:
                if p:
                    b[a_:a_ + 12] = new[32 + 12 * j:44 + 12 * j]
                a_ += 12
                j += 1
            else:
                if old[40 + 12 * i:44 + 12 * i] != new[40 + 12 * j:44 + 12 * j]:
                    if p:
                        b[a_:a_ + 12] = new[32 + 12 * j:44 + 12 * j]
                    a_ += 12
                i += 1
                j += 1
        if not p:
            nrem = (r - 32) // 8
            nadd = (a_ - 32) // 12
    size = 32 + 8 * nrem + 12 * nadd
    assert size <= len(b), size
    base = struct.unpack_from("<I", old, 8)[0]
    ver, n, crc = struct.unpack_from("<III", new, 8)
    struct.pack_into("<4sHHIIIIII", b, 0, b"QWD1", 1, 12, base, ver, nrem, nadd, n, crc)
    return memoryview(b)[:size]


def _chunks(data, ver, base, kind, buf, size=1024):
    # The chunk messages of one object, one at a time in buf (as wlbuild.chunks, no list).
    crc = binascii.crc32(data) & 0xFFFFFFFF
    count = max(1, (len(data) + size - 1) // size)
    for i in range(count):
        part = data[i * size:(i + 1) * size]
        struct.pack_into("<4sBBHHHIIIII", buf, 0, b"QWC1", kind, 0, i, count, 0, ver, base,
                         len(data), crc, i * size)
        buf[32:32 + len(part)] = part
        yield memoryview(buf)[:32 + len(part)]


def _live_crc():
    try:
        f = open(LIVE, "rb")
    except OSError:
        return None
    buf = bytearray(256)
    c = 0
    try:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            c = binascii.crc32(memoryview(buf)[:n], c)
    finally:
        f.close()
    return c & 0xFFFFFFFF


def _wl_boot():
    # App.__init__ at boot: leftovers of an interrupted update removed, the live list opened and
    # checked whole (header, length, CRC) by open_whitelist.
    from store import wlcheck, wlupdate
    wlupdate.cleanup(D)
    w, why = wlcheck.open_whitelist(LIVE)
    assert w is not None, why
    v = w.version
    w.close()
    return v


def _umount():
    try:
        vfs.umount(D)
    except OSError:  # not mounted
        pass


def test_lfs_whitelist_install_power_cuts():
    from compat import asyncio
    from store.wlupdate import Update
    rng = Rng(WSEED)
    fl = Flash("/tmp/qadam-lfs-w-" + binascii.hexlify(os.urandom(4)).decode(), BLOCKS)
    try:
        vfs.VfsLfs2.mkfs(fl.view())
        vfs.mount(fl.view(), D)
        bufs = [bytearray(32 + 12 * MAXN), bytearray(32 + 12 * MAXN)]  # old and new, in turn
        dbuf = bytearray(3072)  # a delta
        cbuf = bytearray(32 + 1024)  # a chunk message
        old = _first(bufs[0], rng)
        f = open(LIVE, "wb")
        f.write(old)
        f.close()
        vfs.umount(D)
        cur = 0  # the buffer holding old
        new = _next(old, bufs[1], rng)
        st = {}
        last = None  # where the previous cut fell
        while fl.cuts < WCUTS:
            fl.arm(rng.below(WOPS), rng)
            vfs.mount(fl.view(), D)  # autodetect, as the ESP32 _boot.py; must never fail
            where = "boot"
            try:
                v = _wl_boot()
                crc = _live_crc()
                if crc == binascii.crc32(new) & 0xFFFFFFFF:
                    got = "new"
                    old = new
                    cur = 1 - cur
                    new = _next(old, bufs[1 - cur], rng)
                else:
                    assert crc == binascii.crc32(old) & 0xFFFFFFFF, "neither list"
                    got = "old"
                assert v == struct.unpack_from("<I", old, 8)[0], v
                _count(st, got)
                if last:
                    _count(st, got + " after cut " + last)
                    last = None
                where = "feed"
                u = Update(D)
                ver = v + 1
                if rng.below(2):
                    _count(st, "delta")
                    msgs = _chunks(_delta(old, new, dbuf), ver, v, 1, cbuf)
                else:
                    _count(st, "snapshot")
                    msgs = _chunks(new, ver, 0, 0, cbuf)
                done = False
                for m in msgs:
                    done = u.feed(m)
                msgs = None
                assert done
                where = "install"
                assert asyncio.run(u.install(v)) == ver
                _count(st, "installed")
            except Exception as e:
                if not fl.dead():
                    raise
                if where != "boot" and not isinstance(e, OSError):
                    # wlupdate turns a flash error during install into WlError("flash")
                    assert e.args == ("flash",), repr(e)
                _count(st, "cut " + where)
                last = where
            vfs.umount(D)
            gc.collect()
        kv = " ".join(k.replace(" ", "_") + "=" + str(v) for k, v in sorted(st.items()))
        print("@stats whitelist cuts=" + str(fl.cuts), "reprog=" + str(fl.reprog), kv)
        for k in ("old", "new", "cut boot", "cut feed", "cut install", "delta", "snapshot",
                  "old after cut install", "new after cut install"):
            assert st.get(k, 0) > 0, (k, st)
        assert fl.reprog == 0, fl.reprog
    finally:
        _umount()
        fl.close()
