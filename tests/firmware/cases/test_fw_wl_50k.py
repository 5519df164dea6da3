# A 50,000-card whitelist (600 KB, far more than the board's heap): every 50th listed key is found
# with its attributes, 1,000 absent keys are not, each lookup reads at most 17 records, and a
# lookup allocates nothing. MicroPython-compatible (runs in the VM at -X heapsize=64K and under
# CPython).
#
# Input: a directory named by the environment variable QADAM_WL50K holding
#   wl.bin      the format-1 whitelist (tests/firmware/test_wl_50k.py builds it on the host with
#               the cloud's builder, cloud.domain.whitelist.build_whitelist)
#   hits.bin    12-byte records expected to be found (key + attributes)
#   misses.bin  8-byte keys expected to be absent
# Without the variable (the generic case runners) the case streams its own 50,000-record file
# with keys increasing by construction (no sort, so it fits the 64 KiB heap).
import binascii
import gc
import os
import struct

from fwhelpers import rmtree, tempdir
from store.whitelist import Whitelist

N = 50000
EVERY = 50
MISSES = 1000
MAX_READS = 17
ALLOC_LOOKUPS = 1000
ALLOC_BOUND = 64  # bytes over 1,000 lookups: "(almost) nothing"


def _getenv(name):
    try:
        return os.getenv(name)
    except AttributeError:  # pragma: no cover
        return None


class _Lcg:
    def __init__(self, seed):
        self.s = seed

    def next(self, bits):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return self.s & ((1 << bits) - 1)


def _build(d):
    """wl.bin with N keys (i << 44) + jitter(< 2^43), misses at (i << 44) + 2^43 + jitter."""
    rnd = _Lcg(7)
    crc = 0
    rec = bytearray(12)
    with open(d + "/wl.bin", "wb") as f, open(d + "/hits.bin", "wb") as h:
        f.write(bytes(32))
        for i in range(N):
            k = (i << 44) | (rnd.next(30) << 13) | rnd.next(13)
            struct.pack_into(">Q", rec, 0, k)
            rec[8] = i & 0xFF
            rec[9] = (i >> 3) & 0xFF
            rec[10] = (i * 7) & 0xFF
            rec[11] = (i >> 8) & 0xFF
            crc = binascii.crc32(rec, crc)
            f.write(rec)
            if i % EVERY == 0:
                h.write(rec)
        f.seek(0)
        f.write(b"QWL1" + struct.pack("<HHIII", 1, 12, 9, N, crc & 0xFFFFFFFF))
    with open(d + "/misses.bin", "wb") as m:
        m.write(bytes(8))  # below the first key
        m.write(b"\xff" * 8)  # above the last key
        for _ in range(MISSES - 2):
            i = rnd.next(30) % N
            k = (i << 44) | (1 << 43) | (rnd.next(30) << 13) | rnd.next(13)
            m.write(struct.pack(">Q", k))


def _load(path, size):
    n = os.stat(path)[6]
    assert n % size == 0, path
    buf = bytearray(n)  # read in place: no second copy on a 64 KiB heap
    with open(path, "rb") as f:
        assert f.readinto(buf) == n, path
    return buf


def _copy(dst, src, off, n):
    for j in range(n):
        dst[j] = src[off + j]


def _check(d):
    wl = Whitelist(d + "/wl.bin")
    try:
        assert wl.count >= N, wl.count
        hits = _load(d + "/hits.bin", 12)
        misses = _load(d + "/misses.bin", 8)
        assert len(hits) // 12 >= N // EVERY and len(misses) // 8 >= MISSES
        key = bytearray(8)
        max_reads = 0
        total = 0
        lookups = 0
        for i in range(len(hits) // 12):
            _copy(key, hits, i * 12, 8)
            r0 = wl.reads
            assert wl.lookup(key), "listed key %d not found" % i
            n = wl.reads - r0
            max_reads = max(max_reads, n)
            total += n
            lookups += 1
            for j in range(12):
                assert wl.rec[j] == hits[i * 12 + j], "record %d byte %d" % (i, j)
            assert wl.attrs() == hits[i * 12 + 8]
            assert wl.profile() == hits[i * 12 + 9]
            assert wl.allergens() == hits[i * 12 + 10] | (hits[i * 12 + 11] << 8)
        for i in range(len(misses) // 8):
            _copy(key, misses, i * 8, 8)
            r0 = wl.reads
            assert not wl.lookup(key), "absent key %d found" % i
            n = wl.reads - r0
            max_reads = max(max_reads, n)
            total += n
            lookups += 1
        assert max_reads <= MAX_READS, max_reads
        alloc = _alloc(wl, hits, misses, key)
        print("wl50k count=%d lookups=%d reads_mean=%.2f reads_max=%d alloc=%s"
              % (wl.count, lookups, total / lookups, max_reads, alloc))
    finally:
        wl.close()


def _alloc(wl, hits, misses, key):
    """Bytes allocated by ALLOC_LOOKUPS lookups (half hits, half misses), gc disabled; then every
    lookup once more under micropython.heap_lock(). None under CPython (no gc.mem_alloc)."""
    if not hasattr(gc, "mem_alloc"):
        return None
    nh = len(hits) // 12
    nm = len(misses) // 8
    found = 0
    gc.collect()
    gc.disable()
    try:
        a0 = gc.mem_alloc()
        for i in range(ALLOC_LOOKUPS // 2):
            _copy(key, hits, (i % nh) * 12, 8)
            if wl.lookup(key):
                found += 1
            _copy(key, misses, (i % nm) * 8, 8)
            if wl.lookup(key):
                found += 1
        delta = gc.mem_alloc() - a0
    finally:
        gc.enable()
    assert found == ALLOC_LOOKUPS // 2, found
    assert delta <= ALLOC_BOUND, "%d bytes allocated by %d lookups" % (delta, ALLOC_LOOKUPS)
    import micropython

    for i in range(100):
        _copy(key, hits if i & 1 else misses, (i // 2) * (12 if i & 1 else 8), 8)
        micropython.heap_lock()
        try:
            ok = wl.lookup(key)
        finally:
            micropython.heap_unlock()
        assert ok == bool(i & 1), i
    return delta


def test_50k_lookups():
    d = _getenv("QADAM_WL50K")
    if d:
        _check(d)
        return
    d = tempdir()
    try:
        _build(d)
        gc.collect()
        _check(d)
    finally:
        rmtree(d)
