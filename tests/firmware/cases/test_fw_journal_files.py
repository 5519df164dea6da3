import os

from fwhelpers import key, read, write
from jhelpers import TAP  # noqa: F401
from jhelpers import ev as _ev
from jhelpers import run as _run
from jhelpers import segs as _segs
from jhelpers import tap as _tap
from jhelpers import unacked as _unacked
from store.journal import DROP_SIZE, TAP_SIZE, Journal


def test_segments_rotate_and_acked_ones_go():
    def t(d):
        j = Journal(d, seg_size=4 + DROP_SIZE + 3 * TAP_SIZE, max_segs=10)
        exp = [_tap(j, 1, s)[1] for s in range(1, 11)]  # 3 taps per segment
        assert _segs(d) == [f"{n:08d}.seg" for n in (1, 2, 3, 4)]
        assert j.ack(1, 1, 4) == 4
        assert _segs(d) == [f"{n:08d}.seg" for n in (2, 3, 4)]  # 1 fully acked: deleted
        j2 = Journal(d, seg_size=4 + DROP_SIZE + 3 * TAP_SIZE, max_segs=10)
        assert [bytes(e) for _, _, e in j2.records()] == exp[4:]
        assert j2.ack(1, 5, 10) == 6 and j2.count == 0
        assert _segs(d) == [f"{4:08d}.seg"]  # the newest stays for the next append
        _tap(j2, 2, 1)
        assert _segs(d) == [f"{4:08d}.seg"]  # room left in it
        assert [r[:2] for r in _unacked(Journal(d))] == [(2, 1)]

    _run(t)



def test_full_drops_oldest_segment_with_an_event():
    def t(d):
        size = 4 + DROP_SIZE + 3 * TAP_SIZE
        j = Journal(d, seg_size=size, max_segs=3)
        for s in range(1, 10):
            assert _tap(j, 1, s)[0] == s
        assert j.ack(1, 1, 1) == 1
        # Full (3 segments of 3): the 10th tap drops segment 1 (2 unacked events left in it).
        s, e = _tap(j, 1, 10, reader="out", up=99, synced=0)
        assert s == 11 and j.last_drop == (2, (1, 2), (1, 3))
        got = _unacked(j)
        assert [r[:2] for r in got] == [(1, q) for q in range(4, 12)]
        drop = got[-2][2]
        assert drop == (b'{"boot":1,"seq":10,"t":1700000000,"sync":0,"up":99,"kind":"dropped",'
                        b'"reader":"out","card":"0000000000000000","result":"denied",'
                        b'"reason":"journal_full","dropped":2,"from":[1,2],"to":[1,3]}')
        assert got[-1][2] == e and j.count == 8
        assert len(_segs(d)) == 3
        assert _unacked(Journal(d, seg_size=size, max_segs=3)) == got

    _run(t)



def test_interrupted_drop_is_finished_on_boot():
    def t(d):
        size = 4 + DROP_SIZE + 3 * TAP_SIZE
        j = Journal(d, seg_size=size, max_segs=2)
        for s in range(1, 7):
            _tap(j, 1, s)
        old = read(d + "/journal/00000001.seg")
        _tap(j, 1, 7)  # drops segment 1
        j.close()
        write(d + "/journal/00000001.seg", old)  # as if reset before the delete
        j2 = Journal(d, seg_size=size, max_segs=2)
        assert _segs(d) == ["00000002.seg", "00000003.seg"]
        assert [r[:2] for r in _unacked(j2)] == [(1, q) for q in range(4, 9)]

    _run(t)



def test_torn_tail_dropped():
    def t(d):
        j = Journal(d)
        j.append(2, 1, _ev(2, 1))
        j.append(2, 2, _ev(2, 2))
        j.close()
        seg = d + "/journal/" + _segs(d)[0]
        good = read(seg)
        for cut in (1, 5, 11, 20):
            write(seg, good + bytes([0x54]) * cut)  # reset in the middle of an append
            j2 = Journal(d)
            assert j2.count == 2 and read(seg) == good  # truncated
            j2.close()
        j2 = Journal(d)
        j2.append(3, 1, _ev(3, 1))
        j3 = Journal(d)
        assert _unacked(j3) == [(2, 1, _ev(2, 1)), (2, 2, _ev(2, 2)), (3, 1, _ev(3, 1))]

    _run(t)



def test_corrupt_record_in_older_segment_is_rejected():
    def t(d):
        size = 4 + DROP_SIZE + 3 * TAP_SIZE
        j = Journal(d, seg_size=size)
        for s in range(1, 8):
            _tap(j, 1, s)
        j.close()
        p = d + "/journal/00000001.seg"
        b = bytearray(read(p))
        b[4 + TAP_SIZE + 20] ^= 1  # a bit flip in record 2 of segment 1
        write(p, b)
        j2 = Journal(d, seg_size=size)
        assert j2.bad == [1]  # reported
        assert [r[:2] for r in _unacked(j2)] == [(1, q) for q in (1, 4, 5, 6, 7)]
        assert read(p) == bytes(b)  # not "repaired" into something else

    _run(t)



def test_cursor_torn_slot_keeps_previous():
    def t(d):
        j = Journal(d)
        for s in range(1, 5):
            j.append(1, s, _ev(1, s))
        j.ack(1, 1, 1)
        j.ack(1, 2, 2)
        c = bytearray(read(d + "/journal/ack"))
        c[16 * 0 + 5] ^= 0xFF  # the newest slot (counter 2) is slot 0: tear it
        write(d + "/journal/ack", c)
        assert [r[:2] for r in _unacked(Journal(d))] == [(1, 2), (1, 3), (1, 4)]

    _run(t)



def test_20000_events_fit_in_640k():
    def t(d):
        j = Journal(d)
        k = key(1)
        for s in range(1, 20001):
            j.append_tap(1, s, 1700000000 + s, 1, s * 50, "in", k, "granted", "ok")
        j.close()
        total = 0
        for n in _segs(d):
            total += os.stat(d + "/journal/" + n)[6]
        assert total <= 640 * 1024, total
        assert j.last_drop is None
        j2 = Journal(d)
        assert j2.count == 20000 and j2.head[2:] == [1, 1]
        assert j2.ack(1, 1, 32) == 32

    _run(t)
