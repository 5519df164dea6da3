# Fakes shared by the canteen case modules: board, display, whitelist, journal and clock.
import gc
import json

from app.canteen import Canteen
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
       "offline_credit_limit": "1000", "override_s": 1, "canteen_slots": 64, "menu_bytes": 384}


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
