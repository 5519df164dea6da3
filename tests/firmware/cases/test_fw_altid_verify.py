# Alternative identification on the board (app.altid, store.altkey): a dynamic QR code and a
# pupil number + PIN verified offline against a real format-1 whitelist file with person and PIN
# records, through the door's decision (app.door.Door.decide). Valid, expired, replayed, forged,
# wrong person, no consent flag -> refused; PIN right, wrong, locked out; the card keeps working.
# CPython (pytest) and MicroPython VM (64 KiB).
import binascii
import struct

import app.altid as alt
from app.door import Door
from fwhelpers import rmtree, tempdir
from store.altkey import hmac256, person_key, pin_key, qr_key, qr_tag
from store.cardkey import card_key
from store.whitelist import Whitelist

SITE = b"altid-site-key-0123456789abcdef!"
T0 = 1765180800  # 2025-12-08 08:00 UTC: a step boundary (T0 % 30 == 0)
CARD = b"\x04\x11\x22\x33"


class Out:
    def __init__(self):
        self.ons = 0
        self.is_on = False
        self.pulsing = True  # Door._pulse starts no relay-off task (no event loop here)

    def on(self):
        self.ons += 1  # is_on stays False: every grant switches the relay on again

    def off(self):
        self.is_on = False

    def ok(self):
        pass

    deny = ok


class Board:
    def __init__(self):
        self.relay = Out()
        self.led = Out()


class Journal:
    def __init__(self):
        self.raw = []
        self.taps = []

    def append_tap(self, boot, seq, t, synced, up, reader, card, result, reason, ref=None):
        self.taps.append((reader, card, result, reason))
        return seq

    def append(self, boot, seq, data, t=0, synced=0, up=0, reader=0):
        self.raw.append(bytes(data))
        return seq


class Clock:
    def __init__(self):
        self.t = T0
        self.synced = True
        self.up = 1000

    def now(self):
        return self.t

    def up_ms(self):
        return self.up


def _rec(key, attrs):
    return bytes(key) + bytes([attrs, 0, 0, 0])


def _whitelist(path):
    # Pupil 1234: QR and PIN consented, PIN 5678; 555: QR only; 77: no method flag; a card.
    a = person_key(SITE, b"1234")
    b = person_key(SITE, b"77")
    recs = [_rec(a, 1 | alt.F_PERSON | alt.F_QR | alt.F_PIN),
            _rec(person_key(SITE, b"555"), 1 | alt.F_PERSON | alt.F_QR),
            _rec(b, 1 | alt.F_PERSON),
            _rec(pin_key(SITE, a, b"5678"), alt.F_PINREC),
            _rec(pin_key(SITE, b, b"1111"), alt.F_PINREC),
            _rec(card_key(SITE, CARD), 1)]
    recs.sort()
    body = b"".join(recs)
    with open(path, "wb") as f:
        f.write(b"QWL1" + struct.pack("<HHIII", 1, 12, 7, len(recs),
                                      binascii.crc32(body) & 0xFFFFFFFF) + bytes(12))
        f.write(body)


def _door():
    d = tempdir()
    _whitelist(d + "/wl.bin")
    door = Door(Board(), Whitelist(d + "/wl.bin"), None, Journal(), Clock(), SITE, 3)
    door.tmp = d
    alt.reset()
    return door


def _done(door):
    door.wl.close()
    rmtree(door.tmp)


def _code(number, step, site=SITE):
    pk = person_key(site, number)
    tag = qr_tag(qr_key(site, pk), pk, step)
    return b"Q1." + number + b"." + str(step).encode() + b"." + binascii.hexlify(tag)


def _flip(code):
    return code[:-1] + (b"1" if code[-1:] == b"0" else b"0")


def _last(door):
    return door.journal.raw[-1].decode()


def test_hmac_sha256_matches_rfc4231_case_2():
    mac = hmac256(b"Jefe", b"what do ya want ", b"for nothing?")
    assert binascii.hexlify(mac) == (b"5bdcc146bf60754e6a042426089575c7"
                                     b"5a003f089d2739839dec58b964ec3843")


def test_a_valid_qr_opens_once_and_the_event_carries_its_method():
    door = _door()
    try:
        step = T0 // 30
        assert alt.qr(door, _code(b"1234", step)) == "granted"
        assert door.board.relay.ons == 1
        ev = _last(door)
        assert '"method":"qr"' in ev and '"result":"granted"' in ev and '"reason":"ok"' in ev
        assert '"card":"' + binascii.hexlify(person_key(SITE, b"1234")).decode() + '"' in ev
        # the same code again: replayed, at any reader
        assert alt.qr(door, _code(b"1234", step)) == "denied"
        assert '"reason":"replayed"' in _last(door)
        door.clock.t += 30  # the next step's code opens again
        assert alt.qr(door, _code(b"1234", step + 1)) == "granted"
        assert door.board.relay.ons == 2
    finally:
        _done(door)


def test_expired_future_forged_wrong_person_and_no_consent_are_refused():
    door = _door()
    try:
        step = T0 // 30
        cases = (
            (_code(b"1234", step - 2), "expired"),  # from a minute ago
            (_code(b"1234", step + 1), "expired"),  # 30 s ahead of the board's clock
            (_code(b"1234", step, b"another school's site key 012345"), "bad_code"),
            (_flip(_code(b"1234", step)), "bad_code"),  # one hex digit changed
            (_code(b"1234", step).replace(b"Q1.1234.", b"Q1.555."), "bad_code"),  # other person
            (_code(b"77", step), "no_consent"),  # listed, no QR consent
            (_code(b"999", step), "unknown_card"),  # not listed at all
        )
        for code, why in cases:
            assert alt.qr(door, code) == "denied", code
            ev = _last(door)
            assert '"reason":"' + why + '"' in ev and '"method":"qr"' in ev, (code, ev)
        assert door.board.relay.ons == 0
        # the previous step's code is still taken 29 s into this step (it was shown until then)
        door.clock.t += 29
        assert alt.qr(door, _code(b"1234", step)) == "granted"
    finally:
        _done(door)


def test_no_qr_without_a_synced_clock_and_garbage_is_no_event():
    door = _door()
    try:
        door.clock.synced = False
        assert alt.qr(door, _code(b"1234", T0 // 30)) == "denied"
        assert '"reason":"clock_unsynced"' in _last(door)
        n = len(door.journal.raw)
        for junk in (b"4006381333931", b"Q1.12a4.1.0123456789abcdef", b"Q1.1.1.xyz",
                     b"Q1.1.1.0123456789abcdeg", b"Q2.1.1.0123456789abcdef"):
            assert alt.qr(door, junk) is None, junk
        assert len(door.journal.raw) == n
    finally:
        _done(door)


def test_the_replay_cache_refuses_rather_than_forgets():
    door = _door()
    try:
        step = T0 // 30
        alt._seen[:] = bytes(len(alt._seen))
        for i in range(alt.REPLAY_N):  # fill every slot with a code still in its window
            alt._seen[i * 12:i * 12 + 8] = struct.pack("<Q", i + 1)
            alt._seen[i * 12 + 8:i * 12 + 12] = struct.pack("<I", step)
        assert alt.qr(door, _code(b"1234", step)) == "denied"
        assert '"reason":"replay_full"' in _last(door)
        door.clock.t += 60  # the step is past: those slots are free again
        assert alt.qr(door, _code(b"1234", step + 2)) == "granted"
    finally:
        _done(door)


def test_pin_right_wrong_and_lockout():
    door = _door()
    try:
        assert alt.pin(door, b"1234", b"5678") == "granted"
        assert '"method":"pin"' in _last(door) and '"reason":"ok"' in _last(door)
        for _ in range(alt.MAX_TRIES):
            assert alt.pin(door, b"1234", b"0000") == "denied"
            assert '"reason":"wrong_pin"' in _last(door)
        # locked: even the right PIN is refused until the lock runs out
        assert alt.pin(door, b"1234", b"5678") == "denied"
        assert '"reason":"locked_out"' in _last(door)
        # another person's PIN path is not locked
        assert alt.pin(door, b"77", b"1111") == "denied"
        assert '"reason":"no_consent"' in _last(door)  # 77 has no PIN consent
        # another person's PIN key does not open for 1234
        door.clock.up += (alt.LOCK_S + 1) * 1000
        assert alt.pin(door, b"1234", b"1111") == "denied"
        assert '"reason":"wrong_pin"' in _last(door)
        assert alt.pin(door, b"1234", b"5678") == "granted"
        assert door.board.relay.ons == 2
    finally:
        _done(door)


def test_a_person_or_pin_record_is_never_a_card_and_the_card_still_works():
    door = _door()
    try:
        door._last_key = None
        assert door.tap(CARD) == "granted"
        assert door.journal.taps[-1][2:] == ("granted", "ok")
        # a person's key offered as a card key (the card path cannot be fed it, but the check
        # must hold whatever the key): refused
        pk = person_key(SITE, b"1234")
        assert door.decide(pk, "in") == "denied"
        assert door.journal.taps[-1][3] == "unknown_card"
        assert door.decide(pin_key(SITE, pk, b"5678"), "in") == "denied"
        # a PIN key offered as a person's QR: not a person record
        assert alt._person(door, pin_key(SITE, pk, b"5678"), alt.F_QR) == "unknown_card"
    finally:
        _done(door)
