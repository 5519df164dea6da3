"""Happy paths of the domain API through HTTP, read back: a dish with its three names, photo,
price and allergens (and the menu's allergen filter); a school and its class; a guardian linked,
listed and unlinked; a device's direction. (Rejections are in test_api_domain.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_world import World, build, login, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.settings import Settings


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w


def _ok(r: Any, status: int = 200) -> Any:
    assert r.status_code == status, (r.status_code, r.text)
    return r.json()


def test_dish_in_three_languages_with_photo_price_and_allergens(
    world: tuple[TestClient, World],
) -> None:
    c, w = world
    h = w.auth("school_admin")
    body = {
        "school_id": "s1",
        "name_kk": "Ботқа сүтпен",
        "name_ru": "Каша молочная",
        "name_en": "Milk porridge",
        "photo_url": "https://cdn.example.kz/menu/porridge.jpg",
        "price": "450.50",
        "allergens": ["milk", "gluten", "milk"],
    }
    made = _ok(c.post("/api/v1/dishes", headers=h, json=body), 201)
    got = _ok(c.get(f"/api/v1/dishes/{made['id']}", headers=w.auth("guardian")))
    assert got == made
    assert {k: got[k] for k in ("name_kk", "name_ru", "name_en", "photo_url", "school_id")} == {
        k: body[k] for k in ("name_kk", "name_ru", "name_en", "photo_url", "school_id")
    }
    assert got["price"] == "450.50" and got["active"] is True
    assert got["allergens"] == ["gluten", "milk"]  # sorted, once each
    assert got["allergen_mask"] == (1 << 0) | (1 << 6)  # bit order of cloud/domain/allergens.py

    def menu(*without: str) -> set[int]:
        params = [("without", a) for a in without]
        page = _ok(c.get("/api/v1/dishes", headers=w.auth("guardian"), params=params))
        return {d["id"] for d in page["items"]}

    plov = w.ids["dish_id"]  # s1's other dish, no allergens
    assert menu() == {plov, made["id"]}
    assert menu("milk") == {plov}
    assert menu("gluten") == {plov}
    assert menu("peanuts", "eggs") == {plov, made["id"]}
    assert menu("peanuts", "milk") == {plov}


def test_create_school_and_class(world: tuple[TestClient, World], database_url: str) -> None:
    c, w = world
    h = w.auth("platform_admin")
    school = {"id": "s7", "name": "School 7", "district_id": w.ids["district_id"]}
    made = _ok(c.post("/api/v1/schools", headers=h, json=school), 201)
    assert made["id"] == "s7" and made["timezone"] == "Asia/Almaty" and "site_key" not in made
    assert _ok(c.get("/api/v1/schools/s7", headers=h)) == made
    # the district's authority now sees it
    listed = _ok(c.get("/api/v1/schools", headers=w.auth("district_authority")))
    assert "s7" in {s["id"] for s in listed["items"]}
    cls = _ok(
        c.post("/api/v1/classes", headers=h, json={"school_id": "s7", "name": "1A", "grade": 1}),
        201,
    )
    assert (cls["school_id"], cls["name"], cls["grade"]) == ("s7", "1A", 1)
    assert _ok(c.get(f"/api/v1/classes/{cls['id']}", headers=h)) == cls
    page = _ok(c.get("/api/v1/classes", headers=h, params={"school": "s7"}))
    assert page["total"] == 1 and page["items"] == [cls]
    # a school admin creates a class in their own school
    mine = _ok(
        c.post(
            "/api/v1/classes",
            headers=w.auth("school_admin"),
            json={"school_id": "s1", "name": "9C"},
        ),
        201,
    )
    assert mine["school_id"] == "s1" and mine["grade"] is None
    with psycopg.connect(database_url) as conn:
        key = conn.execute("SELECT length(site_key) FROM schools WHERE id = 's7'").fetchone()
    assert key == (32,)  # the card-key secret was generated, and never returned


def test_link_list_and_unlink_a_guardian(world: tuple[TestClient, World]) -> None:
    c, w = world
    h = w.auth("school_admin")
    amir = w.ids["amir"]
    user = {"email": "dad@qadam.kz", "password": "a long password", "role": "guardian"}
    dad = _ok(c.post("/api/v1/users", headers=h, json=user), 201)["id"]
    link = _ok(
        c.post(
            f"/api/v1/people/{amir}/guardians",
            headers=h,
            json={"guardian_id": dad, "relation": "parent"},
        ),
        201,
    )
    assert link == {
        "guardian_id": dad,
        "person_id": amir,
        "relation": "parent",
        "email": "dad@qadam.kz",
        "full_name": "",
    }
    listed = _ok(c.get(f"/api/v1/people/{amir}/guardians", headers=h))
    assert listed["total"] == 1 and listed["items"] == [link]
    # the guardian logs in and reads that child, and only that child
    g = {"Authorization": "Bearer " + login(c, "dad@qadam.kz", "a long password")}
    assert _ok(c.get(f"/api/v1/people/{amir}", headers=g))["full_name"] == "Amir Amirov"
    assert {p["id"] for p in _ok(c.get("/api/v1/people", headers=g))["items"]} == {amir}
    assert c.get(f"/api/v1/people/{w.ids['alice']}", headers=g).status_code == 404
    # unlinked: the child is gone from the guardian's view
    r = c.delete(f"/api/v1/people/{amir}/guardians/{dad}", headers=h)
    assert r.status_code == 204, r.text
    assert _ok(c.get(f"/api/v1/people/{amir}/guardians", headers=h))["total"] == 0
    assert c.get(f"/api/v1/people/{amir}", headers=g).status_code == 404
    assert _ok(c.get("/api/v1/people", headers=g))["total"] == 0
    assert _ok(c.get("/api/v1/events", headers=g))["total"] == 0
    # alice's guardian is untouched
    mum = _ok(c.get(f"/api/v1/people/{w.ids['alice']}/guardians", headers=h))
    assert [x["email"] for x in mum["items"]] == ["mum@qadam.kz"]


def _device_rows(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT * FROM devices ORDER BY id").fetchall()


def test_device_direction_create_patch_read_back_and_refuse(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    h = w.auth("technician")
    door = {"id": "door-in", "school_id": "s1", "mode": "door", "direction": "in"}
    made = _ok(c.post("/api/v1/devices", headers=h, json=door), 201)
    assert made["direction"] == "in"
    assert _ok(c.get("/api/v1/devices/door-in", headers=h))["direction"] == "in"
    # not given: 'both' (also what every device had before migration 0012)
    plain = {"id": "cant-9", "school_id": "s1", "mode": "canteen"}
    assert _ok(c.post("/api/v1/devices", headers=h, json=plain), 201)["direction"] == "both"
    assert _ok(c.get("/api/v1/devices/gate-1", headers=h))["direction"] == "both"
    patched = _ok(c.patch("/api/v1/devices/door-in", headers=h, json={"direction": "out"}))
    assert patched["direction"] == "out" and patched["mode"] == "door"
    assert _ok(c.get("/api/v1/devices/door-in", headers=h)) == patched
    page = _ok(c.get("/api/v1/devices", headers=h, params={"direction": "out"}))
    assert [d["id"] for d in page["items"]] == ["door-in"]
    # bad values: 422 with the field named, nothing changed
    before = _device_rows(database_url)
    bad: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/v1/devices", {**door, "id": "door-2", "direction": "sideways"}),
        ("POST", "/api/v1/devices", {**door, "id": "door-2", "direction": "IN"}),
        ("POST", "/api/v1/devices", {**door, "id": "door-2", "direction": None}),
        ("PATCH", "/api/v1/devices/door-in", {"direction": "up"}),
        ("PATCH", "/api/v1/devices/door-in", {"direction": 1}),
        ("PATCH", "/api/v1/devices/door-in", {"direction": "canteen"}),  # a reader, not a place
    ]
    for method, url, body in bad:
        r = c.request(method, url, headers=h, json=body)
        assert r.status_code == 422, (method, body, r.text)
        assert any(d["loc"][-1] == "direction" for d in r.json()["detail"]), r.text
    assert _device_rows(database_url) == before
    # the database refuses it too, whoever writes
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE devices SET direction = 'left' WHERE id = 'door-in'")
    # the change is audited with before and after
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT before->>'direction', after->>'direction' FROM audit_log"
            " WHERE entity = 'devices' AND entity_id = 'door-in' AND action = 'update'"
        ).fetchall()
    assert row == [("in", "out")]
