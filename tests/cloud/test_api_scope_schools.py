"""Object scope across schools: a school admin of school A (s1) who names school B's (s2) objects
in the path gets 404, exactly as for a missing object (D8), and nothing changes. The same calls
with school A's own objects then get past the scope check, so a route that answered 404 to
everything would fail here too. The route list is data: one row per (method, route)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from api_world import CARD_ALICE, World, add_user, build, login_all
from fake_socialwallet import ingest_meals
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.domain import registry
from cloud.provisioning.whitelists import compile_school
from cloud.settings import Settings

CARD_BEA = "3333333333333333"
MONTH = {"month": "2025-10"}
CSV = {"file": ("pupils.csv", b"full_name,iin\n", "text/csv")}


def _dish_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 160, 60)).save(out, "PNG")
    return out.getvalue()


PHOTO = {"photo": ("salad.png", _dish_png(), "image/png")}


def _one(conn: psycopg.Connection[Any], q: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(q, params).fetchone()
    assert row is not None
    return row[0]


def _charge(conn: psycopg.Connection[Any], person: int, source: str) -> int:
    q = "SELECT entry_id FROM ledger_post(%s, 'charge', -200, 'meal', NULL, %s)"
    return int(_one(conn, q, (person, source)))


def _subscription(conn: psycopg.Connection[Any], user: int, n: int) -> int:
    return int(
        _one(
            conn,
            "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (user, f"https://fcm.googleapis.com/fcm/send/x{n}", b"\x04" + b"\x01" * 64, b"a" * 16),
        )
    )


def _webhook(conn: psycopg.Connection[Any], school: str) -> int:
    """A webhook subscriber of the school (D29-I), on a host of its allowlist."""
    conn.execute("INSERT INTO webhook_hosts (school_id, host) VALUES (%s, 'hooks.example.kz')",
                 (school,))  # fmt: skip
    q = (
        "INSERT INTO webhook_subscriptions (school_id, url, events, secret) VALUES"
        " (%s, 'https://hooks.example.kz/q', '{passage}', repeat('s', 40)) RETURNING id"
    )
    return int(_one(conn, q, (school,)))


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World, dict[str, Any], dict[str, Any]]]:
    """The API world, plus in school B what school A has: a pupil with a card, a guardian link,
    a consent, a meal category, a meal charge, a compiled whitelist; a push subscription each.
    Returns (client, world, ids of school A's objects, ids of school B's objects)."""
    w = build(database_url)
    with psycopg.connect(database_url) as conn:
        bea = registry.add_person(conn, "s2", "student", "Bea Bekova")
        registry.add_card(conn, bea, CARD_BEA)
        dad2 = add_user(conn, "dad2@qadam.kz", "guardian")
        conn.execute(
            "INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)", (dad2, bea)
        )
        b = {
            "school_id": "s2",
            "class_id": _one(conn, "INSERT INTO classes (school_id, name) VALUES ('s2', '7B')"
                             " RETURNING id"),
            "person_id": bea,
            "card_key": CARD_BEA,
            "guardian_id": dad2,
            "device_id": "gate-2",
            "dish_id": w.ids["other_dish_id"],
            "category_id": _one(conn, "INSERT INTO meal_categories (school_id, kind, name, price)"
                                " VALUES ('s2', 'free', 'Free', 0) RETURNING id"),
            "consent_id": _one(conn, "INSERT INTO consents (person_id, method, granted_by)"
                               " VALUES (%s, 'face', %s) RETURNING id", (bea, dad2)),
            "charge_id": _charge(conn, bea, "scope:b"),
            "sub_id": _subscription(conn, dad2, 2),
            "webhook_id": _webhook(conn, "s2"),
        }  # fmt: skip
        a = {
            "school_id": "s1",
            "class_id": w.ids["class_id"],
            "person_id": w.ids["alice"],
            "card_key": CARD_ALICE,
            "guardian_id": w.ids["guardian_id"],
            "device_id": "gate-1",
            "dish_id": w.ids["dish_id"],
            "category_id": w.ids["category_id"],
            "consent_id": w.ids["consent_id"],
            "charge_id": _charge(conn, w.ids["alice"], "scope:a"),
            "sub_id": _subscription(conn, w.users["school_admin"], 1),
            "webhook_id": _webhook(conn, "s1"),
        }
        for school in ("s1", "s2"):
            compile_school(conn, school, keep=10)
        # a Social Wallet delivery each: a meal of a pupil on a free meal at a canteen board
        for dev, school, person in (("cant-a", "s1", w.ids["alice"]), ("cant-b", "s2", bea)):
            registry.register_device(conn, dev, school, "canteen", "canteen", "pn532")
            conn.execute("UPDATE people SET meal_category = 1 WHERE id = %s", (person,))
        conn.execute("INSERT INTO meal_categories (school_id, kind, name, price)"
                     " VALUES ('s2', 'reduced', 'Reduced', 100)")  # fmt: skip
        conn.commit()
    ingest_meals(database_url, "cant-a", [1], CARD_ALICE)
    ingest_meals(database_url, "cant-b", [1], CARD_BEA)
    a["delivery_key"], b["delivery_key"] = "meal:cant-a:1:1", "meal:cant-b:1:1"
    for side in (a, b):  # a menu day ahead, planned with the side's own dish
        side["day"], side["set"] = (date.today() + timedelta(days=2)).isoformat(), [side["dish_id"]]
    with psycopg.connect(database_url) as conn:
        n = _one(
            conn, "SELECT count(*) FROM sw_deliveries WHERE idempotency_key LIKE 'meal:cant-%%'"
        )
        assert n == 2, n
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w, a, b


def _key(n: int) -> dict[str, Any]:
    return {"headers": {"Idempotency-Key": f"scope-{n}"}}


# (method, route, request): every route a school admin may call whose path names an object of
# a school (or a user's own push subscription). "{x}" in a body is the same side's id x.
# fmt: off
ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/v1/schools/{school_id}", {}),
    ("PATCH", "/api/v1/schools/{school_id}", {"json": {"name": "Renamed"}}),
    ("GET", "/api/v1/classes/{class_id}", {}),
    ("PATCH", "/api/v1/classes/{class_id}", {"json": {"grade": 3}}),
    ("DELETE", "/api/v1/classes/{class_id}", {}),
    ("GET", "/api/v1/people/{person_id}", {}),
    ("GET", "/api/v1/people/{person_id}/export", {}),
    ("POST", "/api/v1/people/{person_id}/erase", {}),  # own: 409, the person is active
    ("PATCH", "/api/v1/people/{person_id}", {"json": {"full_name": "Renamed"}}),
    ("GET", "/api/v1/people/{person_id}/cards", {}),
    ("POST", "/api/v1/people/{person_id}/cards", {"json": {"uid": "0A0B0C0D"}}),
    ("POST", "/api/v1/cards/{card_key}/revoke", {"json": {"reason": "lost"}}),
    ("GET", "/api/v1/people/{person_id}/guardians", {}),
    ("POST", "/api/v1/people/{person_id}/guardians", {"json": {"guardian_id": "{guardian_id}"}}),
    ("POST", "/api/v1/guardians/{guardian_id}/invitations", {}),  # while still linked
    ("DELETE", "/api/v1/people/{person_id}/guardians/{guardian_id}", {}),
    ("GET", "/api/v1/people/{person_id}/eligibility", {}),
    ("POST", "/api/v1/people/{person_id}/eligibility",
     {"json": {"category_id": "{category_id}", "valid_from": "2025-09-01"}}),
    ("GET", "/api/v1/people/{person_id}/restrictions", {}),
    # own: 409, nothing waits for the school (D28-G)
    ("POST", "/api/v1/people/{person_id}/restrictions/confirm", {"json": {"allergens": ["milk"]}}),
    ("POST", "/api/v1/people/{person_id}/restrictions/decline", {"json": {"allergens": []}}),
    ("GET", "/api/v1/schools/{school_id}/ratings", {}),
    ("GET", "/api/v1/people/{person_id}/balance", {}),
    ("GET", "/api/v1/people/{person_id}/ledger", {}),
    ("POST", "/api/v1/people/{person_id}/balance/top-up",
     {"json": {"amount": "100", "reason": "cash"}, **_key(1)}),
    ("POST", "/api/v1/people/{person_id}/balance/refund",
     {"json": {"amount": "10", "charge_id": "{charge_id}", "reason": "cold soup"}, **_key(2)}),
    ("POST", "/api/v1/people/{person_id}/balance/correction",
     {"json": {"amount": "-1", "reason": "rounding"}, **_key(3)}),
    ("GET", "/api/v1/devices/{device_id}", {}),
    ("PATCH", "/api/v1/devices/{device_id}", {"json": {"place": "moved", "direction": "in"}}),
    ("DELETE", "/api/v1/devices/{device_id}", {}),
    ("POST", "/api/v1/devices/{device_id}/claim-token", {}),
    ("POST", "/api/v1/devices/{device_id}/revoke", {}),
    ("GET", "/api/v1/whitelists/{school_id}", {}),
    ("GET", "/api/v1/dishes/{dish_id}", {}),
    ("PATCH", "/api/v1/dishes/{dish_id}", {"json": {"price": "999"}}),
    ("PUT", "/api/v1/dishes/{dish_id}/photo", {"files": PHOTO}),
    ("DELETE", "/api/v1/dishes/{dish_id}", {}),
    ("PATCH", "/api/v1/meal-categories/{category_id}", {"json": {"name": "Renamed"}}),
    ("POST", "/api/v1/consents/{consent_id}/withdraw", {}),
    ("DELETE", "/api/v1/me/push-subscriptions/{sub_id}", {}),
    ("GET", "/api/v1/schools/{school_id}/webhook-hosts", {}),
    ("GET", "/api/v1/schools/{school_id}/webhooks", {}),
    ("POST", "/api/v1/schools/{school_id}/webhooks",
     {"json": {"url": "https://hooks.example.kz/new", "events": ["meal"]}}),
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret", {}),
    ("DELETE", "/api/v1/webhooks/{webhook_id}", {}),
    ("POST", "/api/v1/schools/{school_id}/import",
     {"params": {"kind": "students", "dry_run": "false"}, "files": CSV}),
    ("GET", "/api/v1/reports/schools/{school_id}/meals", {"params": MONTH}),
    ("GET", "/api/v1/reports/schools/{school_id}/attendance", {"params": MONTH}),
    ("GET", "/api/v1/reports/schools/{school_id}/crosscheck", {"params": MONTH}),
    ("GET", "/api/v1/reports/schools/{school_id}/anomalies", {"params": MONTH}),
    ("POST", "/api/v1/reports/schools/{school_id}/generate",
     {"json": {**MONTH, "kind": "attendance"}}),
    ("POST", "/api/v1/reports/schools/{school_id}/approve",
     {"json": {**MONTH, "kind": "attendance", "acknowledge_anomalies": True}}),
    ("GET", "/api/v1/reports?school_id={school_id}", {}),  # a filter that is checked: 404
    ("POST", "/api/v1/social-wallet/deliveries/{delivery_key}/resend", {}),
    ("PUT", "/api/v1/schools/{school_id}/menu/{day}", {"json": {"periods": {"lunch": "{set}"}}}),
    ("GET", "/api/v1/schools/{school_id}/menu", {}),
    ("GET", "/api/v1/schools/{school_id}/learning", {}),
    ("PUT", "/api/v1/schools/{school_id}/learning",
     {"json": {"resources": [{"title": "Bilimland", "url": "https://bilimland.kz/"}]}}),
    ("POST", "/api/v1/devices/{device_id}/commands", {"json": {"cmd": "diag"}}),
    ("GET", "/api/v1/devices/{device_id}/commands", {}),
    ("DELETE", "/api/v1/people/{person_id}", {}),  # last: deactivates the person
]
# lists and the audit log filtered to school B's objects: empty
LISTS = [
    "/api/v1/people?school={school_id}",
    "/api/v1/classes?school={school_id}",
    "/api/v1/devices?school={school_id}",
    "/api/v1/devices/drift?school={school_id}",
    "/api/v1/dishes?school={school_id}",
    "/api/v1/meal-categories?school={school_id}",
    "/api/v1/consents?person={person_id}",
    "/api/v1/audit?entity=people&entity_id={person_id}",
]
# fmt: on


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def _request(ids: dict[str, Any], route: str, req: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kw = {k: v for k, v in req.items() if k != "headers"}
    if "json" in kw:
        kw["json"] = _fill(kw["json"], ids)
    return route.format(**ids), kw


def snapshot(url: str) -> dict[str, Any]:
    """Every row of every table but sessions (a request may touch its session's last use)."""
    out: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'sessions' ORDER BY 1"
            )
        ]
        for t in tables:
            # as text: some timestamps are -infinity, which Python's datetime cannot hold
            out[t] = conn.execute(f'SELECT x::text FROM "{t}" x ORDER BY 1').fetchall()  # noqa: S608
    return out


def test_school_admin_cannot_reach_another_schools_objects(
    world: tuple[TestClient, World, dict[str, Any], dict[str, Any]], database_url: str
) -> None:
    c, w, mine, theirs = world
    h = w.auth("school_admin")  # of s1
    before = snapshot(database_url)
    assert before["classes"] and before["whitelists"]  # school B has what is asked for
    failures = []
    for method, route, req in ROUTES:
        url, kw = _request(theirs, route, req)
        r = c.request(method, url, headers={**h, **req.get("headers", {})}, **kw)
        if r.status_code != 404:
            failures.append(f"{method} {url}: {r.status_code} {r.text[:150]}, expected 404")
    for route in LISTS:
        url = route.format(**theirs)
        r = c.get(url, headers=h)
        if r.status_code != 200 or r.json()["total"] != 0:
            failures.append(f"GET {url}: {r.status_code} {r.text[:150]}, expected nothing")
    after = snapshot(database_url)
    changed = [t for t in before if after[t] != before[t]]
    if changed:
        failures.append(f"calls into school B changed the tables {changed}")
    # control: school A's own objects get past the scope check (whatever the answer then)
    for method, route, req in ROUTES:
        url, kw = _request(mine, route, req)
        r = c.request(method, url, headers={**h, **req.get("headers", {})}, **kw)
        if r.status_code in (401, 403, 404) or r.status_code >= 500:
            failures.append(f"own school: {method} {url}: {r.status_code} {r.text[:150]}")
    for route in LISTS:
        r = c.get(route.format(**mine), headers=h)
        if r.status_code != 200 or r.json()["total"] == 0:
            failures.append(f"own school: GET {route}: {r.status_code}, expected rows")
    assert not failures, "\n".join(failures)


def test_every_route_with_an_object_in_the_path_is_listed() -> None:
    """A new route a school admin may call with an id in its path needs a row in ROUTES."""
    from test_auth_matrix import EXPECTED

    scoped = {
        key
        for key, allowed in EXPECTED.items()
        if "{" in key[1] and isinstance(allowed, set) and "school_admin" in allowed
    }
    listed = {(method, route.split("?")[0]) for method, route, _ in ROUTES}
    assert scoped - listed == set()
