from fwhelpers import read, rmtree, tempdir, write
from store.journal import Journal, next_boot


def _ev(boot, seq):
    return b'{"boot":%d,"seq":%d,"kind":"tap","x":"\\u00e9 ,]"}' % (boot, seq)


def _unacked(j):
    return [(b, q, bytes(line[s:-1])) for b, q, line, s in j.records()]


def _run(fn):
    d = tempdir()
    try:
        fn(d)
    finally:
        rmtree(d)


def test_boot_counter_persists_and_floor():
    def t(d):
        assert next_boot(d) == 1
        assert next_boot(d) == 2
        assert read(d + "/boot.cnt").strip() == b"2"
        assert next_boot(d, floor=9) == 10  # lost counter vs. journal: never reuse a boot
        write(d + "/boot.cnt", b"junk")
        assert next_boot(d) == 1

    _run(t)


def test_append_iterate_reopen():
    def t(d):
        j = Journal(d)
        assert j.count == 0 and _unacked(j) == []
        for s in (1, 2, 3):
            j.append(7, s, _ev(7, s))
        assert j.count == 3
        assert _unacked(j) == [(7, s, _ev(7, s)) for s in (1, 2, 3)]
        j2 = Journal(d)  # restart
        assert j2.count == 3 and _unacked(j2) == _unacked(j)
        assert j2.min_boot() == 7

    _run(t)


def test_ack_rule_and_trim():
    def t(d):
        j = Journal(d)
        for s in range(1, 6):
            j.append(3, s, _ev(3, s))
        j.append(4, 1, _ev(4, 1))
        assert j.ack(3, 4, 5) == 0  # does not cover the oldest (3/1): ignored
        assert j.ack(2, 1, 5) == 0  # other boot
        assert j.ack(3, 2, 9) == 0  # starts after the oldest
        assert j.count == 6
        assert j.ack(3, 1, 2) == 2
        assert [r[:2] for r in _unacked(j)] == [(3, 3), (3, 4), (3, 5), (4, 1)]
        assert j.ack(3, 1, 2) == 0  # duplicate ack, already trimmed
        # covers the head, drops every record of boot 3 with seq <= last, not boot 4
        assert j.ack(3, 3, 40) == 3
        assert [r[:2] for r in _unacked(j)] == [(4, 1)]
        j2 = Journal(d)
        assert [r[:2] for r in _unacked(j2)] == [(4, 1)]
        assert j2.ack(4, 1, 1) == 1 and j2.count == 0
        assert read(d + "/journal.log") == b""  # compacted when everything is acked
        j3 = Journal(d)
        assert j3.count == 0 and j3.min_boot() == 4
        j3.append(5, 1, _ev(5, 1))
        assert [r[:2] for r in _unacked(Journal(d))] == [(5, 1)]

    _run(t)


def test_cursor_survives_untruncated_log():
    # Reset after the cursor was written but before the log was compacted/advanced.
    def t(d):
        j = Journal(d)
        for s in (1, 2, 3):
            j.append(1, s, _ev(1, s))
        log = read(d + "/journal.log")
        j.ack(1, 1, 3)
        write(d + "/journal.log", log)  # as if the truncation never happened
        j2 = Journal(d)
        assert j2.count == 0 and _unacked(j2) == []

    _run(t)


def test_torn_tail_dropped():
    def t(d):
        j = Journal(d)
        j.append(2, 1, _ev(2, 1))
        j.append(2, 2, _ev(2, 2))
        with open(d + "/journal.log", "ab") as f:
            f.write(b"2 3 {\"boot\":2,\"se")  # reset in the middle of an append
        j2 = Journal(d)
        assert j2.count == 2
        j2.append(3, 1, _ev(3, 1))
        j3 = Journal(d)
        assert _unacked(j3) == [(2, 1, _ev(2, 1)), (2, 2, _ev(2, 2)), (3, 1, _ev(3, 1))]

    _run(t)
