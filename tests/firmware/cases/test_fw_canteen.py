# Canteen decision table (app.canteen) with fake board, whitelist, journal and clock: each outcome,
# meal period boundaries, allergen block + override window, already-received kept across a
# simulated reboot, offline credit limit, balances, config validation. CPython and the
# MicroPython VM (64 KiB).

from app.canteen_cfg import valid
from app.canteen_core import date_of, fmt, money
from canteen_fakes import CFG, DAY, NUTS, SITE, at, make, tap, uid
from fwhelpers import rmtree, tempdir
from store.cardkey import card_key


def test_money_and_dates():
    assert money("650") == 65000 and money("650.5") == 65050 and money(12) == 1200
    assert fmt(65000) == "650" and fmt(65050) == "650.50" and fmt(-150) == "-1.50"
    for bad in ("-1", "1.234", "x", ""):
        try:
            money(bad)
            raise AssertionError(bad)
        except ValueError:
            pass
    assert date_of(DAY) == "2026-11-28" and date_of(0) == "1970-01-01"
    assert date_of(11016) == "2000-02-29"


def test_each_outcome():
    d = tempdir()
    try:
        c, door = make(d, at(12, 30), {"balances": {card_key(SITE, uid(3)).hex(): "1000"}})
        r, ev, disp = tap(c, 1)
        assert (r, ev["reason"], ev["meal"], ev["cat"]) == ("granted", "free", "lunch", 1)
        assert ev["reader"] == "canteen" and ev["kind"] == "tap"
        assert disp == ("Free meal", "Plov") and door.board.led.last == "ok"
        r, ev, disp = tap(c, 2)
        # Reduced pays its share like paid: here on offline credit (its balance is unknown).
        assert (r, ev["reason"], ev["amount"], ev["credit"]) == ("granted", "reduced", "325",
                                                                 "325")
        assert disp == ("Reduced price 325", "Credit 325/1000")
        r, ev, disp = tap(c, 3)
        assert (r, ev["reason"], ev["amount"], ev["balance"]) == ("granted", "paid", "650", "350")
        assert disp == ("Paid from balance 650", "Balance 350")
        r, ev, disp = tap(c, 4)
        assert (r, ev["reason"], ev["credit"]) == ("granted", "offline_credit", "650")
        assert disp == ("On credit 650", "Credit 650/1000")
        r, ev, disp = tap(c, 1)
        assert (r, ev["reason"]) == ("denied", "already_received")
        assert disp[0] == "Already received" and door.board.led.last == "deny"
        r, ev, disp = tap(c, 5)
        assert (r, ev["reason"], ev["allergens"]) == ("denied", "allergen", NUTS)
        assert disp == ("BLOCKED: allergen", "Plov: 0x0004")
        r = c.tap(b"\x09\x09\x09\x09")
        assert r == "denied" and door.journal.ev[-1]["reason"] == "unknown_card"
        assert door.board.display.lines[-1][0] == "Unknown card"
        # Breakfast the next day (300 from 350), then lunch (650): too little left.
        c, door = make(d, at(24 + 8), door=door)
        r, ev, _ = tap(c, 3)
        assert (ev["reason"], ev["balance"], ev["meal"]) == ("paid", "50", "breakfast")
        c, door = make(d, at(24 + 12), door=door)
        r, ev, disp = tap(c, 3)
        assert (r, ev["reason"], ev["balance"]) == ("denied", "no_balance", "50")
        assert disp == ("Balance too low", "Balance 50")
        assert [e["seq"] for e in door.journal.ev] == list(range(1, 10))
    finally:
        rmtree(d)


def test_period_boundaries_and_stale_menu():
    d = tempdir()
    try:
        for (h, m), want in (((7, 59), None), ((8, 0), "breakfast"), ((9, 59), "breakfast"),
                             ((10, 0), None), ((12, 0), "lunch"), ((14, 29), "lunch"),
                             ((14, 30), None)):
            c, door = make(d, at(h, m))
            r, ev, disp = tap(c, 1)
            if want is None:
                assert (r, ev["reason"]) == ("denied", "no_meal_period"), (h, m)
                assert disp[0] == "No meal now"
            else:
                assert ev["meal"] == want, (h, m, ev)
        # Time zone: 06:30 UTC is 12:30 at UTC+6.
        c, door = make(d, at(6, 30), {"tz_offset_min": 360})
        assert c.period_at(at(6, 30), True)[1] == "lunch"
        # Yesterday's menu is not today's: no dish, so no allergen block from it.
        menu = dict(CFG["menu"])
        menu["date"] = "2026-11-28"
        c, door = make(d, at(12, 30), {"menu": menu})
        assert tap(c, 5)[1]["reason"] == "allergen"
        c, door = make(d, at(24 + 12, 30), {"menu": menu})
        r, ev, disp = tap(c, 5)
        assert (r, ev["reason"]) == ("granted", "free") and "dish" not in ev
        # Unsynced clock: one pseudo period, the menu as is (allergens still enforced).
        c, door = make(d, at(3))
        door.clock.synced = False
        r, ev, _ = tap(c, 5)
        assert (ev["reason"], ev["meal"]) == ("allergen", "unsynced")
    finally:
        rmtree(d)


def test_config_validation():
    assert valid("menu", CFG["menu"]) and valid("meal_periods", CFG["meal_periods"])
    assert valid("offline_credit_limit", "500") and valid("override_s", 30)
    assert valid("balances", {"00" * 8: "12.50"}) and valid("mode", "canteen")
    assert not valid("meal_periods", {"x": ["10:00", "09:00"]})
    assert not valid("menu", {"periods": {"lunch": {"price": "-1"}}})
    assert not valid("menu", "x") and not valid("balances", {"zz": "1"})
    assert not valid("override_s", 601) and not valid("mode", "shop")
    import sys
    if sys.implementation.name == "micropython":
        return  # net.cmd on top does not fit 64 KiB here; the integration test sends commands
    from net.cmd import CmdError, check_config
    assert check_config({"menu": CFG["menu"], "reader": "canteen"})
    try:
        check_config({"offline_credit_limit": "lots"})
        raise AssertionError
    except CmdError as e:
        assert e.args[0] == "bad_value:offline_credit_limit"
