# The dated menu (protocol.md "Canteen", D27-A): {"days": {date: {period: SET}}} sent for today and
# the next days, so a board offline for days still blocks a restricted pupil's set on each day;
# a day without a menu blocks nothing; an unsynced clock counts every set of every day. CPython
# and the MicroPython VM (64 KiB).
from app.canteen_cfg import valid
from canteen_fakes import NUTS, at, make, tap
from fwhelpers import rmtree, tempdir

FISH = 0x0008
# 2026-11-28 (DAY) and the next day: lunch sets of two dishes each, combined by the cloud (masks
# OR'd, prices summed); no menu for the day after.
MENU = {"reduced": "325", "days": {
    "2026-11-28": {"lunch": [17, NUTS | 1, "950", "Plov+Salad"]},
    "2026-11-29": {"lunch": [21, FISH, "800", "Fish+Tea"],
                   "breakfast": [30, 0, "300", "Porridge"]}}}

def test_each_day_its_own_set():
    d = tempdir()
    try:
        c, door = make(d, at(12, 30), {"menu": MENU})
        r, ev, disp = tap(c, 5)  # nut allergy, today's set has nuts
        assert (r, ev["reason"], ev["allergens"], ev["dish"]) == ("denied", "allergen", NUTS, 17)
        assert disp == ("BLOCKED: allergen", "Plov+Salad: 0x0004")
        r, ev, _ = tap(c, 3)  # paid, on credit: the set's price
        assert (ev["reason"], ev["credit"], ev["dish"]) == ("offline_credit", "950", 17)
        # The next day, still offline (no new menu came): its own set, which has no nuts.
        c, door = make(d, at(24 + 12, 30), {"menu": MENU}, door=door)
        r, ev, _ = tap(c, 5)
        assert (r, ev["reason"], ev["dish"]) == ("granted", "free", 21)
        c, door = make(d, at(24 + 8, 30), {"menu": MENU}, door=door)
        assert tap(c, 5)[1]["dish"] == 30
        # A day the menu does not cover: no set, so nothing to block.
        c, door = make(d, at(48 + 12, 30), {"menu": MENU}, door=door)
        r, ev, _ = tap(c, 5)
        assert (r, ev["reason"]) == ("granted", "free") and "dish" not in ev
        # Unsynced: the day is unknown, every set of every day counts.
        c, door = make(d, at(72 + 3), {"menu": MENU}, door=door)
        door.clock.synced = False
        assert c.dish((0, 255), "unsynced") == {"allergens": NUTS | 1 | FISH, "price": "950",
                                                "reduced": "325"}
        # a reduced-price pupil pays the menu's reduced price
        door.clock.synced = True
        c, door = make(d, at(24 + 12, 45), {"menu": MENU}, door=door)
        r, ev, _ = tap(c, 2)
        assert (ev["reason"], ev["amount"], ev["dish"]) == ("reduced", "325", 21)
    finally:
        rmtree(d)


def test_dated_menu_validation():
    assert valid("menu", MENU) and valid("menu", {"days": {}})
    assert valid("menu", {"date": "2026-11-28", "periods": {"lunch": {"price": "1"}}})
    assert not valid("menu", {"days": {"2026-11-28": {"lunch": {"price": "-1"}}}})
    assert not valid("menu", {"days": {"2026-11-28": {"lunch": [1, 0, "-1", "x"]}}})
    assert not valid("menu", {"days": {"2026-11-28": {"lunch": [1, 0, "1"]}}})
    assert not valid("menu", {"days": {"2026-11-28": {"lunch": [1, "nuts", "1", "x"]}}})
    assert not valid("menu", {"reduced": "x", "days": {}})
    assert not valid("menu", {"days": {"28.11.2026": {}}})
    assert not valid("menu", {"days": {"2026-11-28": {"lunch": {"allergens": "nuts"}}}})
    assert not valid("menu", {"days": {"2026-11-28": []}})
    assert not valid("menu", {"days": []})
    many = {"2026-12-%02d" % n: {} for n in range(1, 18)}
    assert not valid("menu", {"days": many})  # bounded: a menu cannot take the heap
