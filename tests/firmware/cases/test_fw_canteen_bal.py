# Balance pushes to the canteen (app.canteen_bal, protocol.md "Canteen balances", D15): chunks
# assembled into canteen.bal, the board's own charges after the push's watermark subtracted
# again, stale and malformed pushes rejected without a change, an interrupted push leaving the
# old balances, the school's floor, the dish id on the event. CPython and the MicroPython VM.
import binascii
import gc
import os
import struct

from canteen_fakes import SITE, at, make, tap, uid
from fwhelpers import rmtree, tempdir
from store.cardkey import card_key


class Sync:
    def __init__(self):
        self.status = {}
        self.subs = []
        self.t_status = "p/v1/dev/ct/status"
        self.changed = 0
        self.errors = []

    def status_changed(self):
        self.changed += 1

    def error(self, where, what):  # net.sync's last errors
        self.errors.append((where, what))


def key(n):
    return card_key(SITE, uid(n))


def push(bal, ver, wb, ws, floor=0, per=2, crc=None, first=None):
    """bal: {uid number: tiyn} -> chunk payloads (the cloud's format)."""
    recs = sorted(key(n) + struct.pack("<i", a) for n, a in bal.items())
    body = b"".join(recs)
    c = binascii.crc32(body) & 0xFFFFFFFF if crc is None else crc
    cnt = max(1, (len(recs) + per - 1) // per)
    out = []
    for i in range(cnt):
        part = recs[i * per:(i + 1) * per]
        out.append(struct.pack("<4sHHIIIiIII", b"QBC1", i, cnt, ver, wb, ws, floor, len(recs),
                               c, i * per if first is None else first) + b"".join(part))
    return out


def board(d, t=None, cfg=None):
    c, door = make(d, t or at(12, 30), cfg)
    c.sync = Sync()
    return c, door


def feed(c, msgs):
    for m in msgs:
        c.bal_chunk(m)
    return c.sync.status


def read(d, n):
    try:
        with open(d + "/" + n, "rb") as f:
            return f.read()
    except OSError:
        return None


def test_push_reconciles_own_charges_by_watermark():
    d = tempdir()
    try:
        c, door = board(d, cfg={"balances": {key(3).hex(): "1000"}})
        assert (c.book.wb, c.book.ws) == (3, 0)
        assert tap(c, 3)[1]["balance"] == "350"  # seq 1, from the balance
        assert tap(c, 4)[1]["credit"] == "650"  # seq 2, on credit
        assert tap(c, 2)[1]["credit"] == "325"  # seq 3, reduced share on credit
        # The cloud stored seq 1 (charged card 3: 350) and card 4 got a top-up of 2000.
        st = feed(c, push({3: 35000, 4: 200000, 2: 0}, 7, 3, 1))
        assert st["bal"] == 7 and "bal_err" not in st and c.sync.changed == 1
        assert c.book.balance(key(3))[1] == 35000  # seq 1 is in the push: not twice
        assert c.book.balance(key(4))[1] == 135000  # seq 2 is not: subtracted again
        assert c.book.balance(key(2))[1] == -32500
        assert len(read(d, "canteen.crd")) == 32 and read(d, "canteen.bpt") is None
        # The next push covers everything: the local charge log is dropped.
        feed(c, push({3: 35000, 4: 135000, 2: -32500}, 8, 3, 3))
        assert c.book.balance(key(4))[1] == 135000 and read(d, "canteen.crd") is None
        assert c.book.credit == {}
        # After a reboot the same state comes from flash.
        c2, _ = board(d)
        assert (c2.book.ver, c2.book.wb, c2.book.ws) == (8, 3, 3)
        assert c2.book.balance(key(2))[1] == -32500
        c2 = None  # a board has one canteen: the second one's tables must not crowd the heap
        gc.collect()
        # An older push than the installed one would drop charges: refused, nothing changes.
        before = read(d, "canteen.bal")
        st = feed(c, push({3: 1}, 9, 3, 2))
        assert st.get("bal_err") == "stale" and st["bal"] == 8, st
        assert read(d, "canteen.bal") == before
    finally:
        rmtree(d)


def test_bad_pushes_change_nothing():
    d = tempdir()
    try:
        c, door = board(d)
        feed(c, push({3: 100000, 4: 5000}, 2, 3, 0))
        good = read(d, "canteen.bal")
        two = push({3: 1, 4: 2}, 3, 3, 0)[0]
        three = push({3: 1, 4: 2, 1: 3}, 3, 3, 0, per=1)
        bad = [
            [b"QBC2" + push({3: 1}, 3, 3, 0)[0][4:]],  # magic
            push({3: 1, 4: 2}, 3, 3, 0, crc=1),  # CRC
            [two[:24] + struct.pack("<I", 3) + two[28:]],  # fewer records than announced
            [three[0], three[2]],  # a chunk missing
            push({3: 1, 4: 2}, 3, 3, 0, first=5),  # offset past the end
            [push({3: 1}, 3, 3, 0)[0] + b"xx"],  # not whole records
            [struct.pack("<4sHHIIIiIII", b"QBC1", 0, 1, 3, 3, 0, 0, 99999, 0, 0)],  # too many
            [two[:20] + struct.pack("<i", 5) + two[24:]],  # a floor above 0
            [b"short"],
        ]
        # Two chunks whose keys are not ascending (the second repeats the first's key).
        a = push({3: 1, 4: 2}, 3, 3, 0, per=1)
        bad.append([a[0], a[1][:36] + a[0][36:]])
        for msgs in bad:
            st = feed(c, msgs)
            assert st.get("bal_err") in ("bad_chunk", "crc", "size", "order", "gap"), msgs
            assert c.sync.errors[-1] == ("bal", st["bal_err"])  # in the board's last errors
            assert st["bal"] == 2 and read(d, "canteen.bal") == good
            assert read(d, "canteen.bpt") is None
        feed(c, push({3: 1}, 4, 3, 0))
        assert c.sync.status["bal"] == 4 and "bal_err" not in c.sync.status
    finally:
        rmtree(d)


def test_power_cut_during_a_push_keeps_the_old_balances():
    d = tempdir()
    try:
        c, door = board(d)
        feed(c, push({3: 100000}, 2, 3, 0))
        old = read(d, "canteen.bal")
        msgs = push({3: 1, 4: 2, 5: 3}, 3, 3, 0, per=1)
        feed(c, msgs[:2])  # the power goes after two of three chunks
        assert read(d, "canteen.bpt") is not None and read(d, "canteen.bal") == old
        with open(d + "/canteen.bal.new", "wb") as f:  # and a half-built candidate
            f.write(b"QCB1")
        c2, _ = board(d)  # boot: leftovers are deleted, the old file is used
        assert read(d, "canteen.bpt") is None and read(d, "canteen.bal.new") is None
        assert c2.book.ver == 2 and c2.book.balance(key(3))[1] == 100000
        # A cut between the two renames: new canteen.bal, the old canteen.crd still there.
        assert tap(c2, 4)[1]["credit"] == "650"  # seq 1 on credit
        crd = read(d, "canteen.crd")
        feed(c2, push({3: 100000, 4: 0}, 3, 3, 1))  # the cloud has seq 1
        with open(d + "/canteen.crd", "wb") as f:
            f.write(crd)
        c3, _ = board(d)
        assert c3.book.credit == {} and c3.book.balance(key(4))[1] == 0
    finally:
        rmtree(d)


def test_floor_and_dish_id():
    d = tempdir()
    try:
        menu = {"periods": {"lunch": {"dish": "Plov", "id": 17, "allergens": 0,
                                      "price": "650", "reduced": "325"}}}
        c, door = board(d, cfg={"menu": menu})
        feed(c, push({3: 10000, 2: 10000}, 1, 3, 0, floor=-60000))
        ev = tap(c, 3)[1]  # 100 - 650 = -550 is above the floor of -600
        assert (ev["reason"], ev["balance"], ev["dish"]) == ("paid", "-550", 17)
        ev = tap(c, 2)[1]
        assert (ev["reason"], ev["balance"], ev["amount"]) == ("reduced", "-225", "325")
        c2, _ = board(d, at(24 + 12, 30), {"menu": menu})
        r, ev, disp = tap(c2, 3)
        assert (r, ev["reason"], ev["balance"]) == ("denied", "no_balance", "-550")
        assert os.stat(d + "/canteen.crd")[6] == 32  # two charges logged
    finally:
        rmtree(d)
