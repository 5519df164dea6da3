# Durable event log (invariant 3: an event stays on flash until the cloud acks it). The format is
# docs/protocol.md "Journal". In short:
#   journal/NNNNNNNN.seg  append-only segments ("QJ1\n" + records), at most seg_size bytes each,
#                         at most max_segs of them; only the newest one is ever appended to.
#   journal/ack           the ack cursor: two 16-byte slots (counter, boot, seq, crc32); the valid
#                         slot with the higher counter wins, so a torn write keeps the previous one.
# A record is self-checking (tag, boot, seq, body, crc32 over everything before the crc). A tap is
# 31 bytes; its JSON is rendered from the stored fields by a pure function, so a retransmission is
# byte-identical to the first transmission. Everything <= the cursor (boot, seq) is acked; whole
# segments are deleted once acked. When the journal is full the oldest segment is dropped, and a
# "dropped" event (written before the segment is deleted) says how many unacked events went.
import os
import struct

from compat import unload, write_atomic

from store.jcodec import DROP_SIZE, MAGIC, NP_SIZE, RAW_MAX, TAP_SIZE, read_record, render  # noqa: F401
from store.jwrite import Writer

DIR = "journal"
BOOT = "boot.cnt"
SEG_SIZE = 32768
MAX_SEGS = 20  # 20 x 32 KiB = 640 KiB


def _read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode().strip()
    except OSError:
        return None


def next_boot(dirpath=".", floor=0):
    # Increment and persist the boot counter; call before anything else at start-up.
    # `floor`: the result is > floor. A lost or corrupt counter must not restart at 1 and reuse
    # event identities; the journal knows the newest boot it saw (Journal.min_boot()).
    path = dirpath + "/" + BOOT
    s = _read_text(path)
    try:
        boot = int(s) + 1 if s else 1
    except ValueError:
        print("#", BOOT, "corrupt", repr(s))
        boot = 1
    if boot <= floor:
        boot = floor + 1
    write_atomic(path, b"%d\n" % boot)
    return boot


class Journal(Writer):
    def __init__(self, dirpath=".", seg_size=SEG_SIZE, max_segs=MAX_SEGS, fs=None):
        self.fs = fs or os  # remove, rename, listdir, mkdir (+ open): tests pass a flaky flash
        self.open = fs.open if fs else open
        self.dir = dirpath + "/" + DIR
        self.seg_size = seg_size
        self.max_segs = max(2, max_segs)
        self.rbuf = bytearray(DROP_SIZE)  # one record as read (a long JSON event gets its own)
        self.rec = self.rbuf  # the record read last
        self.wbuf = bytearray(NP_SIZE)  # one record to write (a tap or a "not_passed")
        self.cur = (-1, 0)  # newest acked (boot, seq)
        self.cur_n = 0  # cursor write counter; 0: (re)create the file whole
        self.segs = []  # segment numbers, oldest first
        self.wf = None  # writer: the newest segment, opened for append
        self.woff = 0  # its length
        self.rf = None  # reader handle and the segment it is on
        self.rseg = -1
        self.head = None  # [seg, off, boot, seq] of the oldest unacked record
        self.count = 0  # unacked records
        self.top = (-1, 0)  # newest identity seen (acked or not)
        self.last_drop = None  # (count, first id, last id) of the newest drop
        self.bad = []  # segments with a corrupt record or header (the rest of it is skipped)
        try:
            names = self.fs.listdir(self.dir)
        except OSError:
            self.fs.mkdir(self.dir)
            names = None
        if names:
            # Boot-time only: loaded for the recovery and dropped again (heap).
            import store.jrecover
            try:
                store.jrecover.recover(self, names)
            finally:
                unload(store.jrecover)

    # ---- paths, cursor ------------------------------------------------------------------------
    def _path(self, n, ext=".seg"):
        return "%s/%08d%s" % (self.dir, n, ext)

    # ---- reading ------------------------------------------------------------------------------
    def _reader(self, s):
        if self.rseg != s:
            self._close_reader()
            self.rf = self.open(self._path(s), "rb")
            self.rseg = s
        return self.rf

    def _close_reader(self):
        if self.rf is not None:
            self.rf.close()
            self.rf = None
            self.rseg = -1

    def _read(self, f):
        return read_record(f, self)

    def _ident(self):
        return struct.unpack_from("<II", self.rec, 1)

    def _walk(self, at=None):
        # Yield (seg, off, size) of each record from the head (or from `at`, [seg, off] of a
        # record), oldest first; the record is in self.rec. The reader is re-positioned after
        # every yield (acks use it too).
        h = self.head if at is None else at
        if h is None:
            return
        segs = self.segs
        try:
            i = segs.index(h[0])
        except ValueError:
            return
        off = h[1]
        while i < len(segs):
            s = segs[i]
            last = i == len(segs) - 1
            while not last or off < self.woff:
                f = self._reader(s)
                f.seek(off)
                size = self._read(f)
                if size <= 0:
                    if size < 0:
                        # Never accepted; recovery reported it (self.bad). In an older
                        # segment the rest of it is skipped, in the newest one nothing follows.
                        if last:
                            return
                        print("#", "journal", "corrupt", s, off)  # the rest of segment s skipped
                    break
                yield s, off, size
                off += size
            i += 1
            off = len(MAGIC)

    def records(self, at=None, pos=None):
        # Yield (boot, seq, json) for each unacked record, oldest first. `json` is a memoryview
        # into a buffer of the journal, valid until the next step of the iteration.
        # `at`: start at this [seg, off] instead of the head (a position `pos` got: records never
        # move in their segment). `pos`: a list of two that gets [seg, off] of each record before
        # it is yielded, and once the walk is through, where the next record will be (net.sync's
        # batches in flight, D25-L). Only ints are stored: nothing is allocated for it.
        for s, off, _ in self._walk(at):
            if pos is not None:
                pos[0] = s
                pos[1] = off
            boot, seq = self._ident()
            yield boot, seq, render(self)
        if pos is not None and self.segs:
            pos[0] = self.segs[-1]
            pos[1] = self.woff

    # ---- acks ---------------------------------------------------------------------------------
    def min_boot(self):
        # Newest boot this journal has seen (in a record or in the ack cursor).
        return self.top[0] if self.top[0] > self.cur[0] else self.cur[0]

    def covers_head(self, boot, first, last):
        h = self.head
        return h is not None and h[2] == boot and first <= h[3] <= last

    def ack(self, boot, first, last):
        # Apply an ack per protocol.md: only one covering the oldest record trims (every record of
        # that boot with seq <= last). Returns the number of records dropped (0 = ignored).
        if not self.covers_head(boot, first, last):
            return 0
        n = 0
        upto = None
        nxt = None
        for s, off, size in self._walk():
            b, q = self._ident()
            if b != boot or q > last:
                nxt = [s, off, b, q]
                break
            upto = (b, q)
            n += 1
        if not n:
            return 0
        # The cursor first: after it, a reset re-sends nothing that was acked; deleting the
        # segments it covers is only tidying (recovery redoes it).
        self._save_cursor(upto)
        self.count -= n
        self.head = nxt
        keep = nxt[0] if nxt else self.segs[-1]
        while self.segs[0] < keep:
            self._remove(self.segs[0])
        return n

    def close(self):
        self._close_reader()
        if self.wf is not None:
            self.wf.close()
            self.wf = None
