# Alternative identification at the canteen counter (D29-J): a QR code and a PIN verified by
# app.altid reach the counter's own decision (app.canteen.Canteen.by_key): the pupil's meal
# category and allergens apply as for their card, the event carries "method", refusals are
# events too, the card still works. CPython and MicroPython VM (a canteen's 72 KiB).
import binascii

import app.altid as alt
from canteen_fakes import CARDS, SITE, at, make, tap
from fwhelpers import rmtree, tempdir
from store.altkey import person_key, pin_key, qr_key, qr_tag
from store.cardkey import card_key

PK = person_key(SITE, b"42")


def _code(step):
    return b"Q1.42.%d.%s" % (step, binascii.hexlify(qr_tag(qr_key(SITE, PK), PK, step)))


def _counter(d):
    cards = {card_key(SITE, u): v for u, v in CARDS.items()}
    cards[PK] = (1 << 2 | 1 | alt.F_PERSON | alt.F_QR | alt.F_PIN, 0)  # free meal, QR and PIN
    cards[pin_key(SITE, PK, b"2468")] = (alt.F_PINREC, 0)
    from canteen_fakes import Door
    door = Door(cards, at(12, 30))
    c, door = make(d, at(12, 30), door=door)
    door.counter = c  # as app.runner sets it on a canteen board
    door.reader = "canteen"
    alt.reset()
    return c, door


def test_a_qr_code_and_a_pin_get_the_pupils_meal_with_their_method():
    d = tempdir()
    try:
        c, door = _counter(d)
        step = at(12, 30) // 30
        assert alt.qr(door, _code(step)) == "granted"
        ev = door.journal.ev[-1]
        assert (ev["reason"], ev["meal"], ev["cat"], ev["method"]) == ("free", "lunch", 1, "qr")
        assert ev["card"] == binascii.hexlify(PK).decode()
        assert alt.qr(door, _code(step)) == "denied"
        assert (door.journal.ev[-1]["reason"], door.journal.ev[-1]["method"]) == ("replayed", "qr")
        # the PIN: the meal was received already today, so the counter refuses as for the card
        assert alt.pin(door, b"42", b"1111") == "denied"
        assert door.journal.ev[-1]["reason"] == "wrong_pin"
        assert alt.pin(door, b"42", b"2468") == "denied"
        ev = door.journal.ev[-1]
        assert (ev["reason"], ev["method"]) == ("already_received", "pin")
        # the card of another pupil still works, with no method
        r, ev, _ = tap(c, 1)
        assert (r, ev["reason"]) == ("granted", "free") and "method" not in ev
    finally:
        rmtree(d)
