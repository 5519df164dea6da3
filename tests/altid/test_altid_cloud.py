"""The cloud's side of alternative identification (D29-J): the keys agree with the board's
derivation (firmware/store/altkey.py, run here under CPython) on a fixed vector; the whitelist
compiler gives person records the flags of live consents only, PIN records only while the PIN
consent is live; a consent marks the whitelist dirty; the decoder keeps an event's method."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psycopg
import pytest

from cloud.altid import keys
from cloud.altid.pins import set_pin
from cloud.auth.principal import Principal
from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.domain.errors import Invalid, NotFound
from cloud.ingest.decode import Batch, decode

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
SITE = bytes(range(32))
T = 1_765_180_800  # a step boundary


def _board_altkey():  # the firmware module, imported the way the board does
    if str(FIRMWARE) not in sys.path:
        sys.path.append(str(FIRMWARE))
    import store.altkey

    return store.altkey


def test_keys_agree_with_the_board_and_a_fixed_vector() -> None:
    fw = _board_altkey()
    pk = keys.person_key(SITE, 1234)
    assert pk == fw.person_key(SITE, b"1234")
    assert keys.pin_key(SITE, 1234, "5678") == fw.pin_key(SITE, pk, b"5678")
    step = T // 30
    assert keys.qr_tag(SITE, 1234, step) == fw.qr_tag(fw.qr_key(SITE, pk), pk, step)
    # written down once (computed by hand with hashlib/hmac), so neither side drifts with the other
    assert pk.hex() == "e7a4219b26f9dbbe"
    assert keys.qr_tag(SITE, 1234, step).hex() == "dcf4bb794aeae547"
    assert keys.pin_key(SITE, 1234, "5678").hex() == "ef8a7739dca063f6"
    text, ends = keys.qr_text(SITE, 1234, T + 7)
    assert text == f"Q1.1234.{step}.{keys.qr_tag(SITE, 1234, step).hex()}" and ends == T + 30


def test_bad_inputs_are_refused() -> None:
    for pin in ("123", "123456789", "12a4", "", " 1234"):
        with pytest.raises(ValueError):
            keys.pin_key(SITE, 1, pin)
    for pid in (0, -1):
        with pytest.raises(ValueError):
            keys.person_key(SITE, pid)


def _seed(conn: psycopg.Connection) -> tuple[int, int, int, Principal]:
    registry.create_school(conn, "az", "Alt school", SITE)
    pupil = registry.add_person(conn, "az", "student", "Aida", meal_category=1)
    other = registry.add_person(conn, "az", "student", "Bota")
    registry.add_card(conn, pupil, card_key(SITE, b"\x04\x01\x02\x03"))
    row = conn.execute(
        "INSERT INTO users (email, password_hash, role) VALUES ('mum@az.test', 'x', 'guardian')"
        " RETURNING id"
    ).fetchone()
    assert row is not None
    mum = int(row[0])
    conn.execute("INSERT INTO guardian_students VALUES (%s, %s)", (mum, pupil))
    return pupil, other, mum, Principal(user_id=mum, email="mum@az.test", role="guardian")


def _records(data: bytes) -> dict[bytes, int]:
    return {data[i : i + 8]: data[i + 8] for i in range(32, len(data), 12)}


def _consent(conn: psycopg.Connection, pupil: int, mum: int, method: str) -> int:
    row = conn.execute(
        "INSERT INTO consents (person_id, method, granted_by) VALUES (%s, %s, %s) RETURNING id",
        (pupil, method, mum),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _withdraw(conn: psycopg.Connection, consent: int, mum: int) -> None:
    conn.execute(
        "UPDATE consents SET withdrawn_at = now(), withdrawn_by = %s WHERE id = %s",
        (mum, consent),
    )


def test_the_compiler_follows_the_live_consents(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        pupil, other, mum, guardian = _seed(conn)
        pk = keys.person_key(SITE, pupil)
        card = bytes.fromhex(card_key(SITE, b"\x04\x01\x02\x03"))
        before = _records(registry.compile_whitelist(conn, "az", 1))
        assert before == {card: 1 | 1 << 2}  # a student with a free meal; no alt-id bits
        conn.execute("DELETE FROM whitelist_dirty")
        qr = _consent(conn, pupil, mum, "qr")
        assert conn.execute("SELECT count(*) FROM whitelist_dirty").fetchone() == (1,)
        recs = _records(registry.compile_whitelist(conn, "az", 2))
        assert recs[card] == 1 | 1 << 2  # the card is unchanged
        assert recs[pk] == 1 | 1 << 2 | 0x40 | 0x10  # person, QR
        # the PIN: consent first, then the PIN; the flag only when both are there
        with pytest.raises(Invalid):
            set_pin(conn, guardian, pupil, "4321")
        pin = _consent(conn, pupil, mum, "pin")
        assert _records(registry.compile_whitelist(conn, "az", 3))[pk] & 0x20 == 0
        with pytest.raises(Invalid):
            set_pin(conn, guardian, pupil, "12")
        with pytest.raises(NotFound):
            set_pin(conn, guardian, other, "4321")  # not her child
        set_pin(conn, guardian, pupil, "4321")
        recs = _records(registry.compile_whitelist(conn, "az", 4))
        pinrec = keys.pin_key(SITE, pupil, "4321")
        assert recs[pk] == 1 | 1 << 2 | 0x40 | 0x10 | 0x20 and recs[pinrec] & 0xF0 == 0x80
        stored = conn.execute("SELECT pin_key FROM altid_pins").fetchone()
        assert stored == (pinrec.hex(),) and "4321" not in json.dumps(
            conn.execute("SELECT before, after FROM audit_log").fetchall()
        )
        # withdrawn: the flags go, the PIN record goes, the card stays
        conn.execute("DELETE FROM whitelist_dirty")
        _withdraw(conn, qr, mum)
        _withdraw(conn, pin, mum)
        assert conn.execute("SELECT count(*) FROM whitelist_dirty").fetchone() == (1,)
        recs = _records(registry.compile_whitelist(conn, "az", 5))
        assert recs == {card: 1 | 1 << 2, pk: 1 | 1 << 2 | 0x40}
        # the person key maps the board's events to the pupil as a card's does
        owner = conn.execute("SELECT person_id FROM cards WHERE card_key = %s", (pk.hex(),))
        assert owner.fetchone() == (pupil,)


def test_the_decoder_keeps_the_method_and_old_events_stay_valid() -> None:
    ev = {"boot": 1, "seq": 1, "t": T, "sync": 1, "up": 5, "kind": "tap", "reader": "in",
          "card": "c6f4a4e6f4cbcbe0", "result": "granted", "reason": "ok"}  # fmt: skip
    for extra, want in (({}, None), ({"method": "qr"}, "qr"), ({"method": "pin"}, "pin"),
                        ({"method": "face"}, None), ({"method": 7}, None)):  # fmt: skip
        payload = json.dumps({"v": 1, "dev": "d1", "boot": 1, "events": [ev | extra]})
        got = decode("p/v1/dev/d1/events", payload.encode())
        assert isinstance(got, Batch), got
        assert got.events[0].method == want


def test_erasure_removes_the_person_key_and_the_pin(database_url: str) -> None:
    from cloud.domain.subject_data import erase

    with psycopg.connect(database_url) as conn:
        pupil, _other, mum, guardian = _seed(conn)
        _consent(conn, pupil, mum, "pin")
        set_pin(conn, guardian, pupil, "975310")
        conn.execute("UPDATE people SET active = false WHERE id = %s", (pupil,))
        admin = Principal(user_id=None, email="ops", role="platform_admin")
        removed = erase(conn, admin, pupil, "the guardian asked")["removed"]
        assert removed.get("altid_keys") == 1 and removed.get("altid_pins") == 1, removed
        assert removed["cards"] == 2  # the card and the person key
        for table in ("altid_keys", "altid_pins", "cards"):
            n = conn.execute(f"SELECT count(*) FROM {table} WHERE person_id = %s", (pupil,))
            assert n.fetchone() == (0,), table
        assert _records(registry.compile_whitelist(conn, "az", 9)) == {}
