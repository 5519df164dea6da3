# The rarely run parts of store.journal (docs/protocol.md "Journal"): recovery at boot and the
# full-journal drop. A module of its own so that no single module is too big to compile in a
# small heap (the unit cases run from source in 64 KiB).
import struct
from binascii import crc32

from store.jcodec import DROP_SIZE, MAGIC, T_DROP


def recover(j, names):
    # names: the files in the journal directory.
    fs = j.fs
    segs = []
    for name in names:
        if name.endswith(".tmp"):
            fs.remove(j.dir + "/" + name)  # an interrupted truncation
        elif name.endswith(".seg") and len(name) == 12:
            try:
                segs.append(int(name[:8]))
            except ValueError:
                pass
    segs.sort()
    j.segs = segs
    _load_cursor(j)
    while _scan(j):
        pass
    # Whole segments before the head are acked: delete them (an ack may have been cut short).
    keep = j.head[0] if j.head else (segs[-1] if segs else 0)
    while segs and segs[0] < keep:
        fs.remove(j._path(segs.pop(0)))
    if segs:
        j.wf = j.open(j._path(segs[-1]), "ab")


def _load_cursor(j):
    try:
        f = j.open(j.dir + "/ack", "rb")
    except OSError:
        return
    try:
        b = f.read(32)
    finally:
        f.close()
    best = -1
    for o in (0, 16):
        if len(b) >= o + 16:
            n, boot, seq, c = struct.unpack_from("<IIII", b, o)
            if crc32(b[o:o + 12]) & 0xFFFFFFFF == c and n > best:
                best = n
                j.cur_n = n
                j.cur = (boot, seq)
    if len(b) < 32:
        j.cur_n = 0  # a torn first write: the next one creates the file whole


def _scan(j):
    # One pass over every segment. Returns True if it had to finish an interrupted drop (the
    # caller scans again).
    fs = j.fs
    segs = j.segs
    j.head = None
    j.count = 0
    j.bad = []
    st = [(-1, 0), 0]  # newest identity so far, end of the previous segment
    targets = []
    i = 0
    while i < len(segs):
        s = segs[i]
        last = i == len(segs) - 1
        off, size = _scan_seg(j, s, st, targets)
        if off < 0:
            if last:
                print("# journal: segment %d has a torn header, removed" % s)
                fs.remove(j._path(s))
                segs.pop()
                j.woff = st[1]
                break
            print("# journal: segment %d has a bad header, skipped (corrupt)" % s)
            j.bad.append(s)
        elif size < 0:
            if last:
                print("# journal: dropping torn tail of segment %d at %d" % (s, off))
                _truncate(j, s, off)
            else:
                print("# journal: corrupt record in segment %d at %d, rest skipped" % (s, off))
                j.bad.append(s)
        st[1] = off
        if last:
            j.woff = off
        i += 1
    if st[0] > j.top:
        j.top = st[0]
    again = False
    for t in targets:
        if t in segs:  # a drop was cut after its event was written: finish it
            print("# journal: finishing the drop of segment %d" % t)
            fs.remove(j._path(t))
            segs.remove(t)
            again = True
    return again


def _scan_seg(j, s, st, targets):
    # -> (end of the good records or -1 for a bad header, size of the first bad record or 0)
    f = j.open(j._path(s), "rb")
    try:
        if f.read(len(MAGIC)) != MAGIC:
            return -1, 0
        off = len(MAGIC)
        while True:
            size = j._read(f)
            if size <= 0:
                return off, size
            ident = j._ident()
            if ident <= st[0]:
                return off, -1  # out of order: never accept it
            st[0] = ident
            if ident > j.cur:
                if j.head is None:
                    j.head = [s, off, ident[0], ident[1]]
                j.count += 1
            if j.rec[0] == T_DROP:
                targets.append(struct.unpack_from("<I", j.rec, 38)[0])
            off += size
    finally:
        f.close()


def _truncate(j, s, off):
    # No truncate() in MicroPython: copy the good prefix, rename it over the segment.
    fs = j.fs
    tmp = j._path(s, ".tmp")
    src = j.open(j._path(s), "rb")
    try:
        dst = j.open(tmp, "wb")
        try:
            mv = memoryview(bytearray(256))
            n = off
            while n:
                k = src.readinto(mv[:min(n, len(mv))])
                dst.write(mv[:k])
                n -= k
        finally:
            dst.close()
    finally:
        src.close()
    fs.rename(tmp, j._path(s))


def drop(j, boot, seq, t, synced, up, reader):
    # Full: the oldest segment goes. Its unacked events are counted in a "dropped" event that is
    # written (into the reserve of the current segment) before the segment is deleted; recovery
    # finishes a deletion that a reset interrupted.
    old = j.segs[0]
    n = 0
    first = last = None
    for s, off, size in j._walk():
        if s != old:
            break
        last = j._ident()
        if first is None:
            first = last
        n += 1
    if n:
        w = bytearray(DROP_SIZE)
        up = up if 0 <= up < 1 << 36 else 0
        struct.pack_into("<BIIIIBIIIIII", w, 0, T_DROP, boot, seq, t if 0 <= t <= 0xFFFFFFFF else 0, up & 0xFFFFFFFF,
                         (1 if synced else 0) | reader << 1 | (up >> 32) << 4, n,
                         first[0], first[1], last[0], last[1], old)
        struct.pack_into("<I", w, 42, crc32(w[:42]) & 0xFFFFFFFF)
        j._write(w, boot, seq)
        j.last_drop = (n, first, last)
        print("# journal: full, dropped %d unacked events %d/%d..%d/%d"
              % (n, first[0], first[1], last[0], last[1]))
        seq += 1
    j._remove(old)
    j.count -= n
    if n:
        j._close_reader()
        f = j._reader(j.segs[0])
        f.seek(len(MAGIC))
        if j._read(f) > 0:
            b, q = j._ident()
            j.head = [j.segs[0], len(MAGIC), b, q]
    return seq
