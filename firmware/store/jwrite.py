# The writing half of store.journal.Journal (docs/protocol.md "Journal"): appends, segment
# rotation, the ack cursor. A module of its own so that no module is too big to compile in a
# small heap (the unit cases run from source in 64 KiB).
import struct
from binascii import crc32

from compat import unload

from store.jcodec import (DROP_SIZE, MAGIC, NP_SIZE, PREFIX, RAW_MAX, STRIPPED, T_RAW, TAP_SIZE,
                          pack_tap, reseal, tap_json)


class Writer:
    def _save_cursor(self, ident):
        # Into the slot the previous write did not use (the file is created whole, 32 bytes).
        n = self.cur_n + 1
        o = (n & 1) * 16
        c = bytearray(16)
        struct.pack_into("<III", c, 0, n, ident[0], ident[1])
        struct.pack_into("<I", c, 12, crc32(memoryview(c)[:12]) & 0xFFFFFFFF)
        f = self.open(self.dir + "/ack", "r+b" if n > 1 else "wb")
        try:
            if n > 1:
                f.seek(o)
                f.write(c)
            else:
                f.write(bytes(16) + c)  # counter 1 goes to slot 1
        finally:
            f.close()
        self.cur_n = n
        self.cur = ident

    def _new_seg(self):
        segs = self.segs
        n = segs[-1] + 1 if segs else 1
        if self.wf is not None:
            self.wf.close()
            self.wf = None
        f = self.open(self._path(n), "wb")
        segs.append(n)
        self.woff = 0
        self.wf = f
        f.write(MAGIC)
        f.flush()
        self.woff = len(MAGIC)
        if self.head is None:  # everything before is acked
            while len(segs) > 1:
                self._remove(segs[0])

    def _remove(self, s):
        if self.rseg == s:
            self._close_reader()
        self.fs.remove(self._path(s))
        self.segs.remove(s)

    def _room(self, size, boot, seq, t, synced, up, reader):
        # Make room for a record of `size` bytes; returns the seq it gets (seq + 1 if a dropped
        # event had to take seq).
        if size > self.seg_size - len(MAGIC) - DROP_SIZE:
            raise ValueError("too large")
        if self.wf is None:
            self._new_seg()
        if self.woff + size > self.seg_size - DROP_SIZE:
            if len(self.segs) >= self.max_segs:
                import store.jrecover  # rare (a full journal): loaded for the drop only
                try:
                    seq = store.jrecover.drop(self, boot, seq, t, synced, up, reader)
                finally:
                    unload(store.jrecover)
            self._new_seg()
        return seq

    def _write(self, rec, boot, seq, data=None, tail=None):
        if self.rseg == self.segs[-1]:
            # On LittleFS a handle keeps a snapshot of the file as it was when opened (another
            # handle's appends stay invisible to it, littlefs issue #954): a reader on this
            # segment would stop at the old end, and an ack would skip to the next segment and
            # delete unacked records. It is reopened at the next read (D25-I).
            self._close_reader()
        w = self.wf
        try:
            w.write(rec)
            if data is not None:
                w.write(data)
                w.write(tail)
            w.flush()
        except Exception:
            # Unknown how much reached flash: never append behind it (recovery would take it for
            # a torn tail and cut the records after it); continue in a fresh segment.
            w.close()
            self.wf = None
            self.woff = self.seg_size
            raise
        if self.head is None:
            self.head = [self.segs[-1], self.woff, boot, seq]
        self.woff += len(rec) + (len(data) + 4 if data is not None else 0)
        self.count += 1
        self.top = (boot, seq)

    def append_tap(self, boot, seq, t, synced, up, reader, card, result, reason, ref=None):
        # Journal a tap as a 31-byte record, or with `ref` (the granted tap's seq) a "not_passed"
        # event as a 35-byte one. Returns the seq the event got: `seq`, or seq + 1 when the
        # journal was full and a "dropped" event took `seq`.
        w = self.wbuf
        r = pack_tap(w, boot, seq, t, synced, up, reader, card, result, reason, ref)
        if r < 0:  # not expressible in the compact form: store the JSON itself
            ev = tap_json(boot, seq, t, synced, up, reader, card, result, reason, ref)
            return self.append(boot, seq, ev, t, synced, up)
        size = TAP_SIZE if ref is None else NP_SIZE
        s = self._room(size, boot, seq, t, synced, up, r)
        if s != seq:
            reseal(w, size, s)
        self._write(memoryview(w)[:size], boot, s)
        return s

    def append(self, boot, seq, data, t=0, synced=0, up=0, reader=0):
        # Journal an event given as JSON (str or bytes), reproduced byte for byte. If it starts
        # with '{"boot":B,"seq":S,' for its own identity, that prefix is rebuilt on reading (so it
        # stays right if a "dropped" event takes `seq`). Returns the seq the event got.
        if isinstance(data, str):
            data = data.encode()
        pre = PREFIX % (boot, seq)
        flag = 0
        if data[:len(pre)] == pre:
            data = memoryview(data)[len(pre):]
            flag = STRIPPED
        n = len(data)
        if n > RAW_MAX:
            raise ValueError("too large")
        seq = self._room(15 + n, boot, seq, t, synced, up, reader)
        w = self.wbuf
        struct.pack_into("<BIIH", w, 0, T_RAW, boot, seq, n | flag)
        mv = memoryview(w)
        c = crc32(data, crc32(mv[:11])) & 0xFFFFFFFF
        struct.pack_into("<I", w, 11, c)
        self._write(mv[:11], boot, seq, data, mv[11:15])
        return seq
