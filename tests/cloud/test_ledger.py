"""Meal prices on receipts and the balance ledger (docs/ledger.md, D13): charges from the ingest,
math to the tenge, floor and low-balance notification, idempotency, immutability, concurrency
and the API (roles, scope, bad bodies)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from api_world import CARD_ALICE, CARD_AMIR, World, login_all
from fake_socialwallet import CARD_CARA, canteen_world, ingest_meals
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.ledger import post
from cloud.settings import Settings

D = Decimal


@pytest.fixture
def world(database_url: str) -> World:
    return canteen_world(database_url)


@pytest.fixture
def client(database_url: str, world: World) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, world, database_url)
        yield c


def _q(url: str, q: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(q, params).fetchall()


def _balance(url: str, person: int) -> Decimal:
    rows = _q(url, "SELECT balance FROM balances WHERE person_id = %s", (person,))
    return D(rows[0][0]) if rows else D(0)


def _assert_consistent(url: str, person: int) -> None:
    """balance_after chains entry by entry; the balances row is the last one and the sum."""
    rows = _q(
        url,
        "SELECT amount, balance_after FROM ledger_entries WHERE person_id = %s ORDER BY id",
        (person,),
    )
    running = D(0)
    for amount, after in rows:
        running += amount
        assert after == running
    assert _balance(url, person) == running


def _entries(url: str, person: int) -> list[tuple[Any, ...]]:
    return _q(
        url,
        "SELECT kind, amount, balance_after, below_floor, source, actor FROM ledger_entries"
        " WHERE person_id = %s ORDER BY id",
        (person,),
    )


def test_receipts_carry_price_family_share_and_subsidy(database_url: str, world: World) -> None:
    url = database_url
    alice, amir, cara = world.ids["alice"], world.ids["amir"], world.ids["cara"]
    # the reduced price changes for meals from T0 + 100 s on (history, as 0007 writes it)
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO meal_category_prices (category_id, valid_from, price)"
            " SELECT id, to_timestamp(1760000100), 250 FROM meal_categories"
            " WHERE school_id = 's1' AND kind = 'reduced'"
        )
    assert ingest_meals(url, "cant-1", [1, 2], CARD_ALICE) == 2
    assert ingest_meals(url, "cant-1", [3, 4, 101], CARD_AMIR) == 3
    assert ingest_meals(url, "cant-3", [1], CARD_CARA) == 1
    rows = _q(
        url,
        "SELECT person_id, seq, dish_id, price, family_pays, subsidy FROM meal_receipts"
        " ORDER BY device_id, seq",
    )
    got = {(r[0], r[1]): r[2:] for r in rows}
    assert got == {
        (alice, 1): (None, D("500.00"), D("0"), D("500.00")),
        (alice, 2): (None, D("500.00"), D("0"), D("500.00")),
        (amir, 3): (None, D("500.00"), D("200.00"), D("300.00")),
        (amir, 4): (None, D("500.00"), D("200.00"), D("300.00")),
        (amir, 101): (None, D("500.00"), D("250.00"), D("250.00")),
        (cara, 1): (None, D("450.00"), D("450.00"), D("0")),  # no category: pays in full
    }
    # a free meal is never charged; paid shares are, in the ingest transaction
    assert _entries(url, alice) == []
    assert [e[:3] for e in _entries(url, amir)] == [
        ("charge", D("-200.00"), D("-200.00")),
        ("charge", D("-200.00"), D("-400.00")),
        ("charge", D("-250.00"), D("-650.00")),
    ]
    assert [e[4] for e in _entries(url, amir)] == [
        "meal:cant-1:1:3",
        "meal:cant-1:1:4",
        "meal:cant-1:1:101",
    ]
    assert {e[5] for e in _entries(url, amir)} == {"ingest"}
    assert _entries(url, cara)[0][:3] == ("charge", D("-450.00"), D("-450.00"))
    for p in (amir, cara):
        _assert_consistent(url, p)
    # social wallet and rollup still see every meal
    assert _q(url, "SELECT count(*) FROM sw_deliveries")[0][0] == 6
    assert _q(url, "SELECT sum(quantity) FROM meal_rollup")[0][0] == 6


def test_redelivered_events_are_not_charged_twice(database_url: str, world: World) -> None:
    url = database_url
    amir = world.ids["amir"]
    assert ingest_meals(url, "cant-1", range(1, 6), CARD_AMIR) == 5
    assert ingest_meals(url, "cant-1", range(1, 6), CARD_AMIR) == 0  # the board re-sends
    assert ingest_meals(url, "cant-1", range(1, 8), CARD_AMIR) == 2  # overlap + 2 new
    assert len(_entries(url, amir)) == 7
    assert _balance(url, amir) == D("-1400.00")
    # a second post with the same source (e.g. a receipt re-inserted) changes nothing
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT entry_id, created FROM ledger_post(%s, 'charge', -200, 'meal', NULL,"
            " 'meal:cant-1:1:3')",
            (amir,),
        ).fetchone()
        assert row is not None and row[1] is False
    assert len(_entries(url, amir)) == 7
    _assert_consistent(url, amir)


def test_floor_and_low_balance_notification(database_url: str, world: World) -> None:
    url = database_url
    amir = world.ids["amir"]
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE schools SET balance_floor = -500, low_balance_threshold = 300 WHERE id = 's1'"
        )
        conn.execute(
            "INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)",
            (world.users["guardian"], amir),
        )
        post(conn, amir, "top_up", D("500"), "cash", world.users["school_admin"], "k1")
    # 500 -> 300 -> 100 (crosses 300) -> -100 -> -300 -> -500 (at the floor) -> -700 (below)
    assert ingest_meals(url, "cant-1", range(1, 7), CARD_AMIR) == 6
    entries = _entries(url, amir)
    assert [(e[2], e[3]) for e in entries[1:]] == [
        (D("300.00"), False),
        (D("100.00"), False),
        (D("-100.00"), False),
        (D("-300.00"), False),
        (D("-500.00"), False),
        (D("-700.00"), True),  # served offline anyway: recorded and flagged
    ]
    notes = _q(url, "SELECT idempotency_key, payload FROM outbox WHERE kind = 'low_balance'")
    assert len(notes) == 1  # one per person and day, although two charges qualified
    key, payload = notes[0]
    assert key.startswith(f"low_balance:{amir}:")
    assert payload["balance"] == "100.00"
    assert payload["threshold"] == "300.00"
    assert payload["guardians"] == [world.users["guardian"]]
    assert payload["below_floor"] is False
    _assert_consistent(url, amir)


def test_below_floor_notifies_even_without_a_crossing(database_url: str, world: World) -> None:
    url = database_url
    amir = world.ids["amir"]
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE schools SET balance_floor = -300, low_balance_threshold = -1000")
    assert ingest_meals(url, "cant-1", range(1, 3), CARD_AMIR) == 2  # -200, -400 (below floor)
    notes = _q(url, "SELECT payload FROM outbox WHERE kind = 'low_balance'")
    assert [n[0]["balance"] for n in notes] == ["-400.00"]
    assert notes[0][0]["below_floor"] is True
    assert [e[3] for e in _entries(url, amir)] == [False, True]


def test_ledger_rows_are_immutable(database_url: str, world: World) -> None:
    url = database_url
    amir = world.ids["amir"]
    ingest_meals(url, "cant-1", [1], CARD_AMIR)
    for q in (
        "UPDATE ledger_entries SET amount = -1",
        "UPDATE ledger_entries SET reason = 'x'",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries CASCADE",
    ):
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.RestrictViolation):
            conn.execute(q)
    assert _entries(url, amir)[0][:2] == ("charge", D("-200.00"))


def test_concurrent_top_ups_and_charges(database_url: str, world: World) -> None:
    url = database_url
    amir = world.ids["amir"]
    admin = world.users["school_admin"]
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def top_ups(tag: str) -> None:
        try:
            start.wait()
            with psycopg.connect(url) as conn:
                for i in range(25):
                    with conn.transaction():
                        post(conn, amir, "top_up", D("100.01"), "", admin, f"{tag}-{i}")
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    def charges() -> None:
        try:
            start.wait()
            for i in range(25):
                ingest_meals(url, "cant-1", [i + 1], CARD_AMIR)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [
        threading.Thread(target=top_ups, args=("a",)),
        threading.Thread(target=top_ups, args=("b",)),
        threading.Thread(target=charges),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    # 50 x 100.01 - 25 x 200
    assert _balance(url, amir) == D("5000.50") - D("5000.00")
    assert len(_entries(url, amir)) == 75
    _assert_consistent(url, amir)


def test_one_transaction_waits_for_the_other(database_url: str, world: World) -> None:
    url = database_url
    amir = world.ids["amir"]
    admin = world.users["school_admin"]
    done = threading.Event()
    with psycopg.connect(url) as first:
        post(first, amir, "top_up", D("10"), "", admin, "t1")  # holds the row lock

        def second() -> None:
            with psycopg.connect(url) as conn:
                post(conn, amir, "top_up", D("5"), "", admin, "t2")
            done.set()

        t = threading.Thread(target=second)
        t.start()
        assert not done.wait(0.5)  # blocked on the balance row
    t.join(10)
    assert done.is_set()
    assert [e[2] for e in _entries(url, amir)] == [D("10.00"), D("15.00")]


def _hdr(world: World, role: str, key: str | None = None) -> dict[str, str]:
    h = world.auth(role)
    if key is not None:
        h["Idempotency-Key"] = key
    return h


def test_api_top_up_refund_correction(client: TestClient, database_url: str, world: World) -> None:
    url = database_url
    amir = world.ids["amir"]
    base = f"/api/v1/people/{amir}/balance"
    r = client.post(base + "/top-up", json={"amount": "1000.50", "reason": "kaspi 77"},
                    headers=_hdr(world, "school_admin", "k-1"))  # fmt: skip
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["amount"] == "1000.50" and first["balance_after"] == "1000.50"
    assert first["actor"] == f"user:{world.users['school_admin']}"
    # the same request again: the first entry, nothing posted
    r = client.post(base + "/top-up", json={"amount": "1000.5", "reason": "kaspi 77"},
                    headers=_hdr(world, "school_admin", "k-1"))  # fmt: skip
    assert r.status_code == 200 and r.json()["id"] == first["id"]
    # the same key for another request
    r = client.post(base + "/top-up", json={"amount": "1", "reason": "kaspi 77"},
                    headers=_hdr(world, "school_admin", "k-1"))  # fmt: skip
    assert r.status_code == 409
    ingest_meals(url, "cant-1", [1, 2], CARD_AMIR)  # 2 x 200
    charge_id = _q(url, "SELECT min(id) FROM ledger_entries WHERE kind = 'charge'")[0][0]
    r = client.post(base + "/refund",
                    json={"amount": "150", "charge_id": charge_id, "reason": "soup was cold"},
                    headers=_hdr(world, "platform_admin", "r-1"))  # fmt: skip
    assert r.status_code == 201, r.text
    r = client.post(base + "/refund",
                    json={"amount": "50.01", "charge_id": charge_id, "reason": "the rest"},
                    headers=_hdr(world, "school_admin", "r-2"))  # fmt: skip
    assert r.status_code == 422, r.text  # only 50.00 is left of that charge
    r = client.post(base + "/correction", json={"amount": "-0.50", "reason": "rounding"},
                    headers=_hdr(world, "school_admin", "c-1"))  # fmt: skip
    assert r.status_code == 201, r.text
    # 1000.50 - 400 + 150 - 0.50
    r = client.get(base, headers=world.auth("guardian"))
    assert r.status_code == 404  # not the guardian's child
    r = client.get(base, headers=world.auth("canteen_operator"))
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["balance"] == "750.00" and b["currency"] == "KZT"
    assert b["below_threshold"] is True and b["below_floor"] is False
    r = client.get(f"/api/v1/people/{amir}/ledger?limit=2", headers=world.auth("school_admin"))
    page = r.json()
    assert page["total"] == 5
    assert [e["kind"] for e in page["items"]] == ["correction", "refund"]
    r = client.get(f"/api/v1/people/{amir}/ledger?kind=charge", headers=world.auth("school_admin"))
    assert [e["source"] for e in r.json()["items"]] == ["meal:cant-1:1:2", "meal:cant-1:1:1"]
    _assert_consistent(url, amir)
    audit = _q(url, "SELECT count(*) FROM audit_log WHERE entity = 'ledger_entry'")
    assert audit[0][0] == 3


def test_api_bad_bodies_change_nothing(client: TestClient, database_url: str, world: World) -> None:
    url = database_url
    amir = world.ids["amir"]
    base = f"/api/v1/people/{amir}/balance"
    ingest_meals(url, "cant-1", [1], CARD_AMIR)
    charge_id = _q(url, "SELECT id FROM ledger_entries")[0][0]
    bad: list[tuple[str, Any, str | None]] = [
        ("/top-up", {"amount": "0"}, "b1"),
        ("/top-up", {"amount": "-5"}, "b2"),
        ("/top-up", {"amount": "1.005"}, "b3"),
        ("/top-up", {"amount": "abc"}, "b4"),
        ("/top-up", {"amount": "NaN"}, "b5"),
        ("/top-up", {"amount": "Infinity"}, "b6"),
        ("/top-up", {"amount": "1000000.01"}, "b7"),
        ("/top-up", {"amount": "10", "extra": 1}, "b8"),
        ("/top-up", {"amount": "10", "reason": "x\x00"}, "b9"),
        ("/top-up", {"amount": "10"}, None),  # no Idempotency-Key
        ("/top-up", [1, 2], "b10"),
        ("/refund", {"amount": "10", "charge_id": charge_id}, "b11"),  # no reason
        ("/refund", {"amount": "201", "charge_id": charge_id, "reason": "too much"}, "b12"),
        ("/refund", {"amount": "1", "charge_id": 2**62, "reason": "no such"}, "b13"),
        ("/correction", {"amount": "10"}, "b14"),
        ("/correction", {"amount": "0", "reason": "nothing"}, "b15"),
        ("/correction", {"amount": "10", "reason": "  "}, "b16"),
    ]
    for path, body, key in bad:
        r = client.post(base + path, json=body, headers=_hdr(world, "school_admin", key))
        assert r.status_code == 422, (path, body, r.status_code, r.text)
    r = client.post(base + "/top-up", json={"amount": "10"},
                    headers=_hdr(world, "school_admin", "x" * 201))  # fmt: skip
    assert r.status_code == 422
    assert len(_entries(url, amir)) == 1
    assert _balance(url, amir) == D("-200.00")
    assert _q(url, "SELECT count(*) FROM audit_log WHERE entity = 'ledger_entry'")[0][0] == 0


def test_api_scope(client: TestClient, database_url: str, world: World) -> None:
    alice, cara = world.ids["alice"], world.ids["cara"]
    # the guardian reads their own child's balance and ledger
    r = client.get(f"/api/v1/people/{alice}/balance", headers=world.auth("guardian"))
    assert r.status_code == 200 and r.json()["balance"] == "0.00"
    r = client.get(f"/api/v1/people/{alice}/ledger", headers=world.auth("guardian"))
    assert r.status_code == 200 and r.json()["total"] == 0
    # a school admin of s1 cannot see or top up a person of s3
    r = client.get(f"/api/v1/people/{cara}/balance", headers=world.auth("school_admin"))
    assert r.status_code == 404
    r = client.post(f"/api/v1/people/{cara}/balance/top-up", json={"amount": "5"},
                    headers=_hdr(world, "school_admin", "s-1"))  # fmt: skip
    assert r.status_code == 404
    # guardians and canteen operators do not post money
    for role in ("guardian", "canteen_operator", "district_authority", "technician"):
        r = client.post(f"/api/v1/people/{alice}/balance/top-up", json={"amount": "5"},
                        headers=_hdr(world, role, "s-2"))  # fmt: skip
        assert r.status_code == 403, role
    assert _q(database_url, "SELECT count(*) FROM ledger_entries")[0][0] == 0
