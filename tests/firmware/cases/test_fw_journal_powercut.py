# 1,000 random power cuts during journal appends, acks, segment rotation, full-journal drops and
# recovery itself (issue #3). After each reboot: no acked event reappears, no event whose append
# returned is lost or duplicated, no corrupt record is accepted: the journal yields exactly the
# model's list, byte for byte. Runs under CPython (pytest) and in the MicroPython VM (64 KiB heap);
# the PRNG is the same in both, so both run the same 1,000 cuts.
import json
import os
from binascii import crc32, hexlify

from fwhelpers import rmtree, tempdir
from store.jcodec import READERS, REASONS
from store.journal import Journal

CUTS = 1000
SEED = 20250603
SEG = 4 + 46 + 5 * 31  # 5 taps per segment
SEGS = 4  # so the journal is full after ~20 events: rotation and drops all the time

TAP = (b'{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"tap","reader":"%s",'
       b'"card":"%s","result":"%s","reason":"%s"}')
DROP = (b'{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"dropped","reader":"%s",'
        b'"card":"0000000000000000","result":"denied","reason":"journal_full","dropped":%d,'
        b'"from":[%d,%d],"to":[%d,%d]}')
NOTE = b'{"boot":%d,"seq":%d,"kind":"note","n":%d}'


class Rng:
    # xorshift32: the same sequence under CPython and MicroPython.
    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFF or 1

    def below(self, n):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x % n


class PowerCut(Exception):
    pass


class CutFile:
    def __init__(self, fs, f, name):
        self.fs = fs
        self.f = f
        self.name = name

    def write(self, data):
        fs = self.fs
        fs.alive()
        n = len(data)
        if n <= fs.budget:
            fs.budget -= n
            self.f.write(data)
            self.f.flush()
            return n
        # The cut: the first `budget` bytes reach flash, then maybe garbage over part of the rest
        # (a half-programmed page), never beyond what this write would have covered.
        k = fs.budget
        self.f.write(memoryview(data)[:k])
        if fs.rng.below(2):
            self.f.write(bytes(fs.rng.below(256) for _ in range(fs.rng.below(n - k + 1))))
        self.f.flush()
        fs.cut("write " + self.name)

    def read(self, n):
        return self.f.read(n)

    def readinto(self, b):
        return self.f.readinto(b)

    def seek(self, off):
        return self.f.seek(off)

    def flush(self):
        self.fs.alive()

    def close(self):
        self.f.close()


class CutFS:
    # A flash that loses power after `budget` units: a unit per byte written and per file
    # creation, remove and rename (those are atomic, as on LittleFS). Every operation after the
    # cut raises PowerCut. The journal takes it as its `fs`.
    def __init__(self, budget, rng):
        self.budget = budget
        self.rng = rng
        self.what = None
        self.files = []

    def alive(self):
        if self.what:
            raise PowerCut(self.what)

    def cut(self, what):
        self.what = what
        for f in self.files:
            f.close()
        raise PowerCut(what)

    def _op(self, what):
        self.alive()
        if self.budget <= 0:
            self.cut(what)
        self.budget -= 1

    def open(self, path, mode):
        self.alive()
        name = path.rsplit("/", 1)[-1]
        if "w" in mode:
            self._op("create " + name)
        f = CutFile(self, open(path, mode), name)
        self.files.append(f)
        return f

    def remove(self, path):
        self._op("remove")
        os.remove(path)

    def rename(self, a, b):
        self._op("rename")
        os.rename(a, b)

    def listdir(self, path):
        self.alive()
        return os.listdir(path)

    def mkdir(self, path):
        self._op("mkdir")
        os.mkdir(path)


def _hex(b):
    return hexlify(b)


def _where(what):
    # "write 00000003.seg" -> "write seg"
    w = what.split(" ")
    return w[0] + (" " + w[1].split(".")[-1] if len(w) > 1 else "")


def _event(rng, boot, seq):
    # One random event: (append it to a journal, its JSON for a given seq, what a "dropped"
    # event written by this append carries: t, sync, up, reader).
    kind = rng.below(8)
    if kind == 0:
        n = rng.below(1000)
        return (lambda j: j.append(boot, seq, NOTE % (boot, seq, n)),
                lambda q: NOTE % (boot, q, n), (0, 0, 0, b"in"))
    t = 1700000000 + rng.below(10000000)
    sync = rng.below(2)
    up = rng.below(1 << 36) if rng.below(4) == 0 else rng.below(100000)
    reader = READERS[rng.below(3)]
    card = bytes(rng.below(256) for _ in range(8))
    result = ("granted", "denied")[rng.below(2)]
    reason = REASONS[rng.below(len(REASONS))] if kind > 1 else "odd_" + str(rng.below(9))
    r = reader.encode() if kind > 1 else b"in"  # the JSON fallback's "dropped" event says "in"
    return (lambda j: j.append_tap(boot, seq, t, sync, up, reader, card, result, reason),
            lambda q: TAP % (boot, q, t, sync, up, reader.encode(), _hex(card), result.encode(),
                             reason.encode()),
            (t, sync, up, r))


def _sig(b, q, ev):
    # What the model keeps of an event (the whole JSON fragments a 64 KiB heap): its identity,
    # length and CRC-32.
    return (b, q, len(ev), crc32(ev))


def _drop(live, boot, seq, d, n, first, last):
    # The journal dropped its oldest segment: the n oldest live events, in an event at boot/seq.
    assert n >= 1 and live[0][:2] == first and live[n - 1][:2] == last, (n, first, last, live[:n])
    del live[:n]
    live.append(_sig(boot, seq, DROP % ((boot, seq) + d + (n,) + first + last)))


def _count(st, k):
    st[k] = st.get(k, 0) + 1


def _check(j, live, pend, st):
    # After a reboot: resolve the operation the cut interrupted, then compare with the model.
    ids = []
    pj = None  # the JSON at the identity of an interrupted append
    for b, q, ev in j.records():
        ids.append((b, q))
        if pend and pend[0] == "a" and (b, q) == (pend[1], pend[2]):
            pj = bytes(ev)
    assert j.count == len(ids)
    if pend and pend[0] == "a":
        _, boot, seq, mk, d = pend
        if pj is not None and b'"kind":"dropped"' in pj and pj != mk(seq):
            # The cut came after the "dropped" event: the drop must be complete.
            e = json.loads(pj)
            _drop(live, boot, seq, d, e["dropped"], tuple(e["from"]), tuple(e["to"]))
            _count(st, "cut after dropped event")
            seq += 1
        if (boot, seq) in ids:
            live.append(_sig(boot, seq, mk(seq)))
            _count(st, "cut append kept")
        else:
            _count(st, "cut append lost")
    elif pend:
        n = pend[1]
        here = [e for e in live[:n] if e[:2] in ids]
        assert len(here) in (0, n), "an ack half applied"
        if not here:
            del live[:n]
        _count(st, "cut ack applied" if not here else "cut ack not applied")
    i = 0
    for b, q, ev in j.records():
        assert i < len(live) and live[i] == _sig(b, q, ev), (i, b, q, bytes(ev), live[i:i + 1])
        i += 1
    assert i == len(live), (i, live)


def _session(j, rng, live, boot, st, box):
    # Random appends and acks until the power goes; box[0] is the operation under way.
    seq = 0
    while True:
        if live and (rng.below(4) == 0 or len(live) > 24):
            hb, hq = live[0][:2]
            if rng.below(8) == 0:  # acks that do not cover the oldest record change nothing
                assert j.ack(hb, hq + 1, hq + 9) == 0 and j.ack(hb - 1, 0, 1 << 30) == 0
            same = [e[1] for e in live if e[0] == hb]
            last = same[rng.below(len(same))] + (rng.below(4) if rng.below(4) == 0 else 0)
            n = len([q for q in same if q <= last])
            box[0] = ("k", n)
            assert j.ack(hb, hq - rng.below(2), last) == n
            del live[:n]
        else:
            seq += 1
            call, mk, d = _event(rng, boot, seq)
            box[0] = ("a", boot, seq, mk, d)
            s = call(j)
            assert s in (seq, seq + 1)
            if s != seq:
                n, first, last = j.last_drop
                _drop(live, boot, seq, d, n, first, last)
                _count(st, "drops")
            live.append(_sig(boot, s, mk(s)))
            seq = s
        box[0] = None


def _run(d, cuts):
    rng = Rng(SEED)
    live = []  # _sig() of every event the journal must hold, oldest first
    st = {}
    box = [None]
    boot = 0
    done = 0
    while done < cuts:
        boot += 1
        fs = CutFS(rng.below(700), rng)
        where = " (boot)"
        try:
            j = Journal(d, SEG, SEGS, fs)
            _check(j, live, box[0], st)
            box[0] = None
            where = ""
            _session(j, rng, live, boot, st, box)
        except PowerCut:
            done += 1
            _count(st, _where(fs.what) + where)
    _check(Journal(d, SEG, SEGS), live, box[0], st)
    return st


def test_1000_power_cuts():
    d = tempdir()
    try:
        st = _run(d, CUTS)
    finally:
        rmtree(d)
    print(sorted(st.items()))
    # Where the cuts fell (the same in both VMs): every kind of write, in every phase.
    for k in ("write seg", "write ack", "create seg", "remove", "write tmp (boot)",
              "rename (boot)", "drops", "cut after dropped event", "cut append lost",
              "cut ack applied", "cut ack not applied"):
        assert st.get(k, 0) > 0, (k, st)
