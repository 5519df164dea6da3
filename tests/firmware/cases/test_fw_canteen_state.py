# Canteen state (app.canteen): allergen override window, already-received kept across a
# simulated reboot, offline credit limit and a balance sync. The fakes are as in test_fw_canteen
# (one module would not compile in 64 KiB). CPython and the MicroPython VM (64 KiB).
import time

from canteen_fakes import SITE, Door, at, make, tap, uid
from fwhelpers import rmtree, tempdir
from store.cardkey import card_key


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
        assert ev["credit"] == "325"  # the reduced share is charged too (D13)
        assert sorted(c2.book.credit.values()) == [32500, 65000]
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
