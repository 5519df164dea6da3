"""Object scope: guardians see only their own children, school staff only their school,
district authorities only their district, technicians only devices."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_world import CARD_ALICE, CARD_AMIR, World, build, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.domain import registry
from cloud.domain.whitelist import HEADER, RECORD
from cloud.settings import Settings


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w


def _get(c: TestClient, w: World, role: str, url: str, **params: Any) -> Any:
    r = c.get(url, headers=w.auth(role), params=params or None)
    assert r.status_code == 200, (url, r.status_code, r.text)
    return r.json()


def _people(body: Any) -> set[int]:
    return {i["id"] for i in body["items"]}


def test_guardian_sees_only_own_children(world: tuple[TestClient, World]) -> None:
    c, w = world
    alice, amir, bob = w.ids["alice"], w.ids["amir"], w.ids["bob"]
    assert _people(_get(c, w, "guardian", "/api/v1/people")) == {alice}
    assert _get(c, w, "guardian", "/api/v1/people", school="s1")["total"] == 1
    assert c.get(f"/api/v1/people/{alice}", headers=w.auth("guardian")).status_code == 200
    for other in (amir, bob, 999_999):
        r = c.get(f"/api/v1/people/{other}", headers=w.auth("guardian"))
        assert r.status_code == 404, r.text
        r = c.put(
            f"/api/v1/people/{other}/restrictions",
            headers=w.auth("guardian"),
            json={"allergens": ["milk"]},
        )
        assert r.status_code == 404
        assert c.get(f"/api/v1/people/{other}/cards", headers=w.auth("guardian")).status_code == 404
    events = _get(c, w, "guardian", "/api/v1/events")
    assert [e["person"] for e in events["items"]] == [alice]
    assert _get(c, w, "guardian", "/api/v1/events", person=amir)["total"] == 0
    assert _get(c, w, "guardian", "/api/v1/events", school="s2")["total"] == 0
    # the menu of the children's school only
    assert {d["school_id"] for d in _get(c, w, "guardian", "/api/v1/dishes")["items"]} == {"s1"}
    r = c.get(f"/api/v1/dishes/{w.ids['other_dish_id']}", headers=w.auth("guardian"))
    assert r.status_code == 404
    # a lost card: own child's yes, another child's no
    r = c.post(f"/api/v1/cards/{CARD_AMIR}/revoke", headers=w.auth("guardian"), json={})
    assert r.status_code == 404
    r = c.post(f"/api/v1/cards/{CARD_ALICE}/revoke", headers=w.auth("guardian"), json={})
    assert r.status_code == 200 and r.json()["revoke_reason"] == "lost"
    # consents and ratings
    r = c.post(
        "/api/v1/consents", headers=w.auth("guardian"), json={"person_id": amir, "method": "face"}
    )
    assert r.status_code == 404
    assert {x["person_id"] for x in _get(c, w, "guardian", "/api/v1/consents")["items"]} == {alice}
    r = c.post(
        "/api/v1/ratings",
        headers=w.auth("guardian"),
        json={
            "person_id": amir,
            "dish_id": w.ids["dish_id"],
            "served_on": "2025-10-09",
            "score": 5,
        },
    )
    assert r.status_code == 404


def test_guardian_restriction_reaches_the_whitelist(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    alice = w.ids["alice"]
    r = c.put(
        f"/api/v1/people/{alice}/restrictions",
        headers=w.auth("guardian"),
        json={"allergens": ["peanuts", "milk", "milk"], "note": "severe"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["allergens"] == ["milk", "peanuts"]
    assert r.json()["allergen_mask"] == (1 << 6) | (1 << 4)
    with psycopg.connect(database_url) as conn:
        blob = registry.compile_whitelist(conn, "s1", version=2)
    records = [
        RECORD.unpack_from(blob, HEADER.size + i * RECORD.size)
        for i in range((len(blob) - HEADER.size) // RECORD.size)
    ]
    masks = {k.hex(): al for k, _attrs, _prof, al in records}
    assert masks[CARD_ALICE] == (1 << 6) | (1 << 4) and masks[CARD_AMIR] == 0
    got = _get(c, w, "canteen_operator", f"/api/v1/people/{alice}/restrictions")
    assert got["note"] == "severe"


def test_school_admin_sees_and_changes_only_own_school(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    h = w.auth("school_admin")
    assert _people(_get(c, w, "school_admin", "/api/v1/people")) == {w.ids["alice"], w.ids["amir"]}
    assert _get(c, w, "school_admin", "/api/v1/people", school="s2")["total"] == 0
    assert {e["school"] for e in _get(c, w, "school_admin", "/api/v1/events")["items"]} == {"s1"}
    assert [s["id"] for s in _get(c, w, "school_admin", "/api/v1/schools")["items"]] == ["s1"]
    assert c.get(f"/api/v1/people/{w.ids['bob']}", headers=h).status_code == 404
    assert c.get("/api/v1/schools/s2", headers=h).status_code == 404
    assert c.get("/api/v1/devices/gate-2", headers=h).status_code == 404
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM people").fetchone()
    r = c.post(
        "/api/v1/people",
        headers=h,
        json={"school_id": "s2", "kind": "student", "full_name": "Intruder"},
    )
    assert r.status_code == 404
    assert c.patch("/api/v1/devices/gate-2", headers=h, json={"place": "x"}).status_code == 404
    r = c.patch(f"/api/v1/people/{w.ids['bob']}", headers=h, json={"full_name": "X"})
    assert r.status_code == 404
    r = c.post(
        "/api/v1/users",
        headers=h,
        json={
            "email": "boss@x.kz",
            "password": "long enough pw",
            "role": "school_admin",
            "school_id": "s1",
        },
    )
    assert r.status_code == 403
    r = c.post(
        "/api/v1/users",
        headers=h,
        json={
            "email": "cook9@x.kz",
            "password": "long enough pw",
            "role": "canteen_operator",
            "school_id": "s2",
        },
    )
    assert r.status_code == 403
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM people").fetchone() == before
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (8,)
        assert conn.execute("SELECT place FROM devices WHERE id = 'gate-2'").fetchone() == (
            "entrance",
        )
    # own school: allowed
    r = c.post(
        "/api/v1/people",
        headers=h,
        json={"school_id": "s1", "kind": "student", "full_name": "New Pupil"},
    )
    assert r.status_code == 201, r.text
    audit = _get(c, w, "school_admin", "/api/v1/audit")
    assert audit["total"] >= 1 and {a["school_id"] for a in audit["items"]} == {"s1"}


def test_district_authority_reads_its_district_only(world: tuple[TestClient, World]) -> None:
    c, w = world
    schools = _get(c, w, "district_authority", "/api/v1/schools")
    assert sorted(s["id"] for s in schools["items"]) == ["s1", "s2"]
    events = _get(c, w, "district_authority", "/api/v1/events")
    assert sorted(e["school"] for e in events["items"]) == ["s1", "s1", "s2"]
    districts = _get(c, w, "district_authority", "/api/v1/districts")
    assert [d["id"] for d in districts["items"]] == [w.ids["district_id"]]
    r = c.get(
        f"/api/v1/districts/{w.ids['other_district_id']}", headers=w.auth("district_authority")
    )
    assert r.status_code == 404
    assert (
        c.get(f"/api/v1/people/{w.ids['cara']}", headers=w.auth("district_authority")).status_code
        == 404
    )


def test_technician_only_devices(world: tuple[TestClient, World], database_url: str) -> None:
    c, w = world
    h = w.auth("technician")
    assert [d["id"] for d in _get(c, w, "technician", "/api/v1/devices")["items"]] == ["gate-1"]
    for url in ("/api/v1/people", "/api/v1/events", "/api/v1/dishes", "/api/v1/consents"):
        assert c.get(url, headers=h).status_code == 403, url
    r = c.post(
        "/api/v1/devices",
        headers=h,
        json={"id": "canteen-1", "school_id": "s1", "mode": "canteen", "reader": "pn532"},
    )
    assert r.status_code == 201, r.text
    r = c.post(
        "/api/v1/devices", headers=h, json={"id": "canteen-2", "school_id": "s2", "mode": "canteen"}
    )
    assert r.status_code == 404
    assert c.delete("/api/v1/devices/gate-1", headers=h).status_code == 409  # has events
    assert c.delete("/api/v1/devices/canteen-1", headers=h).status_code == 204
    with psycopg.connect(database_url) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM devices ORDER BY id").fetchall()]
    assert ids == ["gate-1", "gate-2", "gate-3"]


def test_canteen_operator_gets_a_minimal_people_list(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE people SET external_id = 'IIN-1' WHERE id = %s", (w.ids["alice"],))
    admin = _get(c, w, "school_admin", f"/api/v1/people/{w.ids['alice']}")
    cook = _get(c, w, "canteen_operator", f"/api/v1/people/{w.ids['alice']}")
    assert admin["external_id"] == "IIN-1" and cook["external_id"] is None
    assert _people(_get(c, w, "canteen_operator", "/api/v1/people")) == {
        w.ids["alice"],
        w.ids["amir"],
    }
    assert (
        c.get(
            f"/api/v1/people/{w.ids['alice']}/cards", headers=w.auth("canteen_operator")
        ).status_code
        == 403
    )


def test_school_admin_lists_own_staff_and_own_pupils_guardians(
    world: tuple[TestClient, World],
) -> None:
    c, w = world
    everyone = _get(c, w, "platform_admin", "/api/v1/users")
    assert everyone["total"] == 8  # with Alice's own student account (D28-O)
    mine = _get(c, w, "school_admin", "/api/v1/users")
    assert sorted(u["email"] for u in mine["items"]) == [
        "admin1@qadam.kz",
        "alice@s1.pupil",  # Alice's own student account (D28-O)
        "cook1@qadam.kz",
        "mum@qadam.kz",  # guardian of Alice (s1)
        "tech1@qadam.kz",
    ]
    guardians = _get(c, w, "school_admin", "/api/v1/users?role=guardian")
    assert [u["email"] for u in guardians["items"]] == ["mum@qadam.kz"]
