# Canteen state (app.canteen): allergen override window, already-received kept across a
# simulated reboot, offline credit limit and a balance sync. The fakes are as in test_fw_canteen
# (one module would not compile in 64 KiB). CPython and the MicroPython VM (64 KiB).
import gc
import json
import time

from app.canteen import Canteen
from fwhelpers import rmtree, tempdir
from store.cardkey import card_key

SITE = b"k" * 16
DAY = 20785  # 2026-11-28
T0 = DAY * 86400  # 00:00 UTC
FREE, REDUCED, PAID, NONE = b"\x01", b"\x02", b"\x03", b"\x04"
NUTS = 0x0004
CFG = {"meal_periods": {"breakfast": ["08:00", "10:00"], "lunch": ["12:00", "14:30"]},
       "menu": {"periods": {
           "breakfast": {"dish": "Porridge", "allergens": 0, "price": "300", "reduced": "150"},
           "lunch": {"dish": "Plov", "allergens": NUTS | 1, "price": "650", "reduced": "325"}}},
       "offline_credit_limit": "1000", "override_s": 1, "canteen_slots": 64}


def at(h, m=0):
    return T0 + h * 3600 + m * 60


class Led:
    def __init__(self):
        self.last = None

    def ok(self):
        self.last = "ok"

    def deny(self):
        self.last = "deny"

    def off(self):
        self.last = None


class Display:
    def __init__(self):
        self.lines = []

    def show(self, l1, l2):
        self.lines.append((l1, l2))


class Ev:
    def set(self):
        pass


class Board:
    def __init__(self):
        self.led = Led()
        self.display = Display()


class WL:
    def __init__(self, cards):
        self.cards = cards  # key -> (attrs, allergens)
        self.rec = None

    def lookup(self, key):
        self.rec = self.cards.get(bytes(key))
        return self.rec is not None

    def attrs(self):
        return self.rec[0]

    def allergens(self):
        return self.rec[1]


class Journal:
    def __init__(self):
        self.ev = []

    def append_tap(self, boot, seq, t, synced, up, reader, card, result, reason):
        self.ev.append({"seq": seq, "reader": reader, "result": result, "reason": reason})
        return seq

    def append(self, boot, seq, data, t=0, synced=0, up=0, reader=0):
        self.ev.append(json.loads(data))
        return seq


class Clock:
    def __init__(self, t, synced=True):
        self.t = t
        self.synced = synced

    def now(self):
        return self.t

    def up_ms(self):
        return 7


class Door:
    def __init__(self, cards, t):
        self.board = Board()
        self.wl = WL(cards)
        self.wl_reason = "no_whitelist"
        self.journal = Journal()
        self.clock = Clock(t)
        self.site_key = SITE
        self.boot = 3
        self.seq = 0
        self.taps = 0
        self.on_event = None

    def append(self, fn, ev):
        self.seq = fn(*ev)


# uid -> (attrs byte: meal category << 2 | person kind, allergen mask)
CARDS = {b"\x01\x01\x01\x01": (1 << 2 | 1, 0),  # free
         b"\x02\x02\x02\x02": (2 << 2 | 1, 0),  # reduced
         b"\x03\x03\x03\x03": (3 << 2 | 1, 0),  # paid, balance known
         b"\x04\x04\x04\x04": (3 << 2 | 1, 0),  # paid, balance unknown: offline credit
         b"\x05\x05\x05\x05": (1 << 2 | 1, NUTS),  # free, nut allergy
         b"\x06\x06\x06\x06": (3 << 2 | 1, NUTS)}  # paid (credit), nut allergy


def uid(n):
    return bytes([n]) * 4


def make(d, t, cfg=None, door=None):
    gc.collect()
    door = door or Door({card_key(SITE, u): v for u, v in CARDS.items()}, t)
    door.clock.t = t
    c = dict(CFG)
    c.update(cfg or {})
    cn = Canteen(door, c, d)
    cn.ev = Ev()  # no LED/buzzer task: a queued task would keep every Canteen alive
    return cn, door


def tap(c, n):
    c._last = None  # no debounce between the cases' taps
    r = c.tap(uid(n))
    return r, c.door.journal.ev[-1], c.door.board.display.lines[-1]


def test_allergen_override_window():
    d = tempdir()
    try:
        c, door = make(d, at(13))
        assert c.override() is None  # nothing blocked
        r, ev, _ = tap(c, 6)
        assert ev["reason"] == "allergen"
        blocked = ev["seq"]
        assert c.override() is True
        ev = door.journal.ev[-1]
        assert (ev["result"], ev["reason"], ev["ref"], ev["paid_as"]) == (
            "granted", "override_allergen", blocked, "offline_credit")
        assert ev["credit"] == "650" and ev["seq"] == blocked + 1
        assert door.board.display.lines[-1][0] == "OVERRIDE allergen 650"
        assert c.override() is None  # once
        r, ev, _ = tap(c, 6)
        assert ev["reason"] == "already_received"
        # Too late: the window (override_s 1) has passed.
        r, ev, _ = tap(c, 5)
        assert ev["reason"] == "allergen"
        time.sleep(1.1)
        assert c.override() is None
        assert door.journal.ev[-1]["reason"] == "allergen"
    finally:
        rmtree(d)


def test_already_received_survives_reboot_not_period():
    d = tempdir()
    try:
        c, door = make(d, at(12, 5))
        assert tap(c, 1)[1]["reason"] == "free"
        assert tap(c, 4)[1]["reason"] == "offline_credit"
        # Reboot: a new Canteen from the files on flash.
        c2, door = make(d, at(13), door=Door(door.wl.cards, at(13)))
        assert tap(c2, 1)[1]["reason"] == "already_received"
        ev = tap(c2, 2)[1]
        assert ev["reason"] == "reduced"
        assert c2.book.credit and list(c2.book.credit.values()) == [65000]
        # The next period (breakfast the next day) starts over.
        c3, door = make(d, at(24 + 8, 30), door=door)
        assert tap(c3, 1)[1]["reason"] == "free"
        c4, door = make(d, at(24 + 9), door=Door(door.wl.cards, at(24 + 9)))
        assert tap(c4, 1)[1]["reason"] == "already_received"
        assert tap(c4, 2)[1]["reason"] == "reduced"  # lunch's reduced tap is not this period's
    finally:
        rmtree(d)


def test_offline_credit_limit():
    d = tempdir()
    try:
        c, door = make(d, at(12, 30))
        assert tap(c, 4)[1]["credit"] == "650"
        c, door = make(d, at(24 + 8, 30), door=door)  # breakfast 300: 950 <= 1000
        ev = tap(c, 4)[1]
        assert (ev["reason"], ev["credit"]) == ("offline_credit", "950")
        c, door = make(d, at(24 + 12, 30), door=door)  # lunch 650: 1600 > 1000
        r, ev, disp = tap(c, 4)
        assert (r, ev["reason"], ev["credit"]) == ("denied", "credit_limit", "1600")
        assert disp == ("Credit limit", "Credit 1600/1000")
        # A balance sync clears the credit (the cloud has the meals in its balance).
        c.configure({"balances": {card_key(SITE, uid(4)).hex(): "700"}})
        assert c.book.credit == {}
        ev = tap(c, 4)[1]
        assert (ev["reason"], ev["balance"]) == ("paid", "50")
    finally:
        rmtree(d)
