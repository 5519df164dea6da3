import json
import os

from fwhelpers import read, write
from jhelpers import TAP  # noqa: F401
from jhelpers import ev as _ev
from jhelpers import run as _run
from jhelpers import segs as _segs
from jhelpers import tap as _tap
from jhelpers import unacked as _unacked
from store.journal import TAP_SIZE, Journal, next_boot


def test_boot_counter_persists_and_floor():
    def t(d):
        assert next_boot(d) == 1
        assert next_boot(d) == 2
        assert read(d + "/boot.cnt").strip() == b"2"
        assert next_boot(d, floor=9) == 10  # lost counter vs. journal: never reuse a boot
        write(d + "/boot.cnt", b"junk")
        assert next_boot(d) == 1

    _run(t)



def test_tap_json_byte_identical_and_compact():
    def t(d):
        j = Journal(d)
        exp = []
        for i, (rd, res, rs, sy) in enumerate((("in", "granted", "ok", 1),
                                               ("out", "denied", "unknown_card", 0),
                                               ("canteen", "denied", "no_whitelist", 1),
                                               ("in", "denied", "bad_whitelist", 0))):
            s, e = _tap(j, 3, i + 1, t=i * 1000003, up=(1 << 35) + i * 77, reader=rd,
                        result=res, reason=rs, synced=sy)
            exp.append((3, s, e))
        assert _unacked(j) == exp
        size = os.stat(d + "/journal/" + _segs(d)[0])[6]
        assert size == 4 + 4 * TAP_SIZE  # 31 bytes per tap
        # Values the compact form cannot hold are stored as the JSON itself, same bytes out.
        s, e = _tap(j, 3, 5, t=-5, reason="some_new_reason", up=1 << 40)
        s2, e2 = _tap(j, 3, 6, k=b"\x01\x02\x03")
        exp += [(3, 5, e), (3, 6, e2)]
        assert _unacked(j) == exp
        assert _unacked(Journal(d)) == exp  # and after a restart
        for _b, q, ev in exp:
            assert json.loads(ev)["seq"] == q

    _run(t)



def test_not_passed_compact_and_byte_identical():
    # A "not_passed" event (app.turnstile) is a 35-byte record rendering exactly the JSON the
    # turnstile used to build and store whole.
    def t(d):
        j = Journal(d)
        k = bytes(range(1, 9))
        tmpl = ('{"boot":%d,"seq":%d,"t":%d,"sync":%d,"up":%d,"kind":"not_passed","reader":"%s",'
                '"card":"%s","result":"granted","reason":"passage_timeout","ref":%d}')
        exp = []
        for q, (t_, sy, up, rd, ref) in enumerate(((1700000000, 1, 5, "in", 7),
                                                   (12, 0, (1 << 35) + 3, "out", 0xFFFFFFFF),
                                                   (-5, 1, 9, "in", 8))):
            s = j.append_tap(4, q + 1, t_, sy, up, rd, k, "granted", None, ref)
            exp.append((4, s, tmpl % (4, s, t_, sy, up, rd, "0102030405060708", ref)))
        got = [(b, q, bytes(e).decode()) for b, q, e in j.records()]
        assert got == exp
        size = os.stat(d + "/journal/" + _segs(d)[0])[6]
        assert size > 4 + 2 * 35  # two compact records, the third (t < 0) as JSON
        j2 = Journal(d)
        assert [(b, q, bytes(e).decode()) for b, q, e in j2.records()] == exp

    _run(t)


def test_append_iterate_reopen():
    def t(d):
        j = Journal(d)
        assert j.count == 0 and _unacked(j) == []
        for s in (1, 2, 3):
            assert j.append(7, s, _ev(7, s)) == s
        j.append(7, 4, b'{"other":1}')  # no identity prefix: stored whole
        assert j.count == 4
        exp = [(7, s, _ev(7, s)) for s in (1, 2, 3)] + [(7, 4, b'{"other":1}')]
        assert _unacked(j) == exp
        j2 = Journal(d)  # restart
        assert j2.count == 4 and _unacked(j2) == exp
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
        j3 = Journal(d)
        assert j3.count == 0 and j3.min_boot() == 4
        j3.append(5, 1, _ev(5, 1))
        assert [r[:2] for r in _unacked(Journal(d))] == [(5, 1)]

    _run(t)



def test_ack_beyond_newest_does_not_pre_ack():
    # The cursor is the newest record actually trimmed, not the ack's `last`.
    def t(d):
        j = Journal(d)
        j.append(2, 1, _ev(2, 1))
        assert j.ack(2, 1, 50) == 1
        j.append(2, 2, _ev(2, 2))
        assert [r[:2] for r in _unacked(Journal(d))] == [(2, 2)]

    _run(t)
