"""The domain API through HTTP: CRUD, cards, eligibility, consents, ratings, the audit log,
and bad input (4xx, nothing changed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_world import CARD_ALICE, World, build, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.domain import registry
from cloud.domain.cardkey import card_key
from cloud.settings import Settings

TABLES = (
    "regions",
    "districts",
    "schools",
    "classes",
    "people",
    "cards",
    "users",
    "sessions",
    "guardian_students",
    "devices",
    "dishes",
    "meal_categories",
    "meal_eligibility",
    "allergen_restrictions",
    "meal_ratings",
    "consents",
    "audit_log",
)


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w


def snapshot(url: str) -> dict[str, Any]:
    """Every row of every domain table."""
    out: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        for t in TABLES:
            out[t] = conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()  # noqa: S608
    return out


def _call(c: TestClient, w: World, role: str, method: str, url: str, body: Any = None) -> Any:
    return c.request(method, url, headers=w.auth(role), json=body)


def test_crud_writes_audit_rows_with_before_and_after(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    r = _call(c, w, "platform_admin", "POST", "/api/v1/regions", {"name": "Turkistan"})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    r = _call(c, w, "platform_admin", "PATCH", f"/api/v1/regions/{rid}", {"name": "Turkestan"})
    assert r.status_code == 200 and r.json()["name"] == "Turkestan"
    assert _call(c, w, "platform_admin", "DELETE", f"/api/v1/regions/{rid}").status_code == 204
    assert _call(c, w, "platform_admin", "GET", f"/api/v1/regions/{rid}").status_code == 404
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT actor_id, actor, action, before->>'name', after->>'name' FROM audit_log"
            " WHERE entity = 'regions' AND entity_id = %s ORDER BY id",
            (str(rid),),
        ).fetchall()
    me = w.users["platform_admin"]
    assert rows == [
        (me, "root@qadam.kz", "create", None, "Turkistan"),
        (me, "root@qadam.kz", "update", "Turkistan", "Turkestan"),
        (me, "root@qadam.kz", "delete", "Turkestan", None),
    ]


def test_secrets_never_reach_the_audit_log_or_responses(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    r = _call(c, w, "platform_admin", "POST", "/api/v1/schools", {"id": "s9", "name": "Nine"})
    assert r.status_code == 201 and "site_key" not in r.json()
    r = _call(
        c,
        w,
        "school_admin",
        "POST",
        "/api/v1/users",
        {"email": "Dad@Example.kz", "password": "a long password", "role": "guardian"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "dad@example.kz" and "password_hash" not in r.json()
    with psycopg.connect(database_url) as conn:
        docs = conn.execute("SELECT after::text FROM audit_log WHERE after IS NOT NULL").fetchall()
    text = " ".join(d[0] for d in docs)
    assert "site_key" not in text and "password_hash" not in text and "argon2" not in text


# (role, method, url, body): each must be rejected with 4xx and change nothing
BAD = [
    ("platform_admin", "POST", "/api/v1/regions", {}),
    ("platform_admin", "POST", "/api/v1/regions", {"name": ""}),
    ("platform_admin", "POST", "/api/v1/regions", {"name": "x" * 201}),
    ("platform_admin", "POST", "/api/v1/regions", {"name": "a\x00b"}),
    ("platform_admin", "POST", "/api/v1/regions", {"name": "Almaty"}),  # duplicate: 409
    ("platform_admin", "POST", "/api/v1/regions", {"name": "X", "extra": 1}),
    ("platform_admin", "POST", "/api/v1/districts", {"region_id": 999999, "name": "Ghost"}),
    ("platform_admin", "POST", "/api/v1/schools", {"id": "bad id!", "name": "X"}),
    (
        "platform_admin",
        "POST",
        "/api/v1/schools",
        {"id": "s8", "name": "X", "timezone": "Mars/Base"},
    ),
    ("platform_admin", "DELETE", "/api/v1/districts/{district_id}", None),  # has schools: 409
    (
        "school_admin",
        "POST",
        "/api/v1/people",
        {"school_id": "s1", "kind": "pupil", "full_name": "X"},
    ),
    (
        "school_admin",
        "POST",
        "/api/v1/people",
        {"school_id": "s1", "kind": "student", "full_name": "X", "class_id": 999999},
    ),
    ("school_admin", "PATCH", "/api/v1/people/{alice}", {"access_profile": 256}),
    ("school_admin", "PATCH", "/api/v1/people/{alice}", {"kind": None, "full_name": ""}),
    ("school_admin", "POST", "/api/v1/people/{alice}/cards", {}),
    (
        "school_admin",
        "POST",
        "/api/v1/people/{alice}/cards",
        {"uid": "04a1", "card_key": CARD_ALICE},
    ),
    ("school_admin", "POST", "/api/v1/people/{alice}/cards", {"uid": "zz"}),
    ("school_admin", "POST", "/api/v1/people/{alice}/cards", {"card_key": CARD_ALICE}),  # 409
    ("school_admin", "POST", "/api/v1/cards/{card_key}/revoke", {"reason": "eaten"}),
    ("school_admin", "POST", "/api/v1/cards/0000000000000000/revoke", {}),
    (
        "school_admin",
        "POST",
        "/api/v1/people/{alice}/guardians",
        {"guardian_id": 1},
    ),  # not a guardian
    ("school_admin", "POST", "/api/v1/people/{alice}/guardians", {"guardian_id": "{guardian_id}"}),
    (
        "school_admin",
        "POST",
        "/api/v1/people/{alice}/eligibility",
        {"category_id": 999, "valid_from": "2025-09-01"},
    ),
    (
        "school_admin",
        "POST",
        "/api/v1/people/{alice}/eligibility",
        {"category_id": "{category_id}", "valid_from": "2025-09-01", "valid_until": "2025-08-01"},
    ),
    (
        "school_admin",
        "POST",
        "/api/v1/dishes",
        {"school_id": "s1", "name_kk": "a", "name_ru": "b", "price": -1},
    ),
    (
        "school_admin",
        "POST",
        "/api/v1/dishes",
        {"school_id": "s1", "name_kk": "a", "name_ru": "b", "price": "1.001"},
    ),
    (
        "school_admin",
        "POST",
        "/api/v1/dishes",
        {
            "school_id": "s1",
            "name_kk": "a",
            "name_ru": "b",
            "price": 1,
            "allergens": ["kryptonite"],
        },
    ),
    (
        "school_admin",
        "POST",
        "/api/v1/meal-categories",
        {"school_id": "s1", "kind": "free", "name": "F", "price": 0},
    ),
    (
        "school_admin",
        "POST",
        "/api/v1/meal-categories",
        {"school_id": "s1", "kind": "reduced", "name": "R", "price": 1e20},
    ),
    (
        "school_admin",
        "PATCH",
        "/api/v1/meal-categories/{category_id}",
        {"price": 100},
    ),  # free costs 0
    (
        "school_admin",
        "POST",
        "/api/v1/devices",
        {"id": "Gate_1", "school_id": "s1", "mode": "door"},
    ),
    (
        "school_admin",
        "POST",
        "/api/v1/devices",
        {"id": "gate-1", "school_id": "s1", "mode": "door"},
    ),
    (
        "school_admin",
        "POST",
        "/api/v1/devices",
        {"id": "gate-9", "school_id": "s1", "mode": "teleport"},
    ),
    ("guardian", "PUT", "/api/v1/people/{alice}/restrictions", {"allergens": ["gold"]}),
    (
        "guardian",
        "POST",
        "/api/v1/ratings",
        {"person_id": "{alice}", "dish_id": "{dish_id}", "served_on": "2025-10-09", "score": 6},
    ),
    (
        "guardian",
        "POST",
        "/api/v1/ratings",
        {
            "person_id": "{alice}",
            "dish_id": "{other_dish_id}",
            "served_on": "2025-10-09",
            "score": 3,
        },
    ),
    (
        "guardian",
        "POST",
        "/api/v1/ratings",
        {"person_id": "{alice}", "dish_id": "{dish_id}", "served_on": "2999-01-01", "score": 3},
    ),
    (
        "guardian",
        "POST",
        "/api/v1/consents",
        {"person_id": "{alice}", "method": "face"},
    ),  # live already: 409
    ("guardian", "POST", "/api/v1/consents", {"person_id": "{alice}", "method": "dna"}),
    (
        "guardian",
        "POST",
        "/api/v1/consents",
        {"person_id": "{alice}", "method": "palm", "guardian_id": 1},
    ),
    (
        "school_admin",
        "POST",
        "/api/v1/consents",
        {"person_id": "{alice}", "method": "palm"},
    ),  # whose?
    (
        "platform_admin",
        "GET",
        "/api/v1/events?since=2025-10-10T00:00:00Z&until=2025-10-09T00:00:00Z",
        None,
    ),
    ("platform_admin", "GET", "/api/v1/people?limit=0", None),
    ("platform_admin", "GET", "/api/v1/people/0", None),
    ("platform_admin", "GET", "/api/v1/people/99999999999999999999", None),
]


def _fill(value: Any, ids: dict[str, Any]) -> Any:
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return ids[value[1:-1]]
    if isinstance(value, str):
        for k, v in ids.items():
            value = value.replace("{" + k + "}", str(v))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


def test_bad_input_is_4xx_and_changes_nothing(
    world: tuple[TestClient, World], database_url: str
) -> None:
    """All cases share one world: each must leave every table exactly as it was."""
    c, w = world
    failures = []
    before = snapshot(database_url)
    for role, method, url, body in BAD:
        r = _call(c, w, role, method, _fill(url, w.ids), _fill(body, w.ids))
        case = f"{role} {method} {url} {body}: {r.status_code} {r.text[:150]}"
        detail = r.json().get("detail")
        if not (400 <= r.status_code < 500) or r.status_code in (401, 403):
            failures.append("not a 4xx rejection: " + case)
        elif not detail or not (
            isinstance(detail, str) or all(d["msg"] and d["loc"] for d in detail)
        ):
            failures.append("no clear error: " + case)
        after = snapshot(database_url)
        if after != before:
            failures.append("changed the database: " + case)
            before = after
    assert not failures, "\n".join(failures)


def test_lost_card_leaves_the_whitelist_and_a_new_card_gets_in(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    alice = w.ids["alice"]
    r = _call(
        c, w, "school_admin", "POST", f"/api/v1/cards/{CARD_ALICE}/revoke", {"reason": "lost"}
    )
    assert r.status_code == 200 and r.json()["revoked_at"] and r.json()["revoke_reason"] == "lost"
    r = _call(c, w, "school_admin", "POST", f"/api/v1/cards/{CARD_ALICE}/revoke", {})
    assert r.status_code == 409
    r = _call(
        c, w, "school_admin", "POST", f"/api/v1/people/{alice}/cards", {"uid": "04A1B2C3D4E5F6"}
    )
    assert r.status_code == 201, r.text
    new_key = r.json()["card_key"]
    assert new_key == card_key(b"k" * 32, bytes.fromhex("04a1b2c3d4e5f6"))
    cards = _call(c, w, "guardian", "GET", f"/api/v1/people/{alice}/cards").json()
    assert cards["total"] == 2
    with psycopg.connect(database_url) as conn:
        blob = registry.compile_whitelist(conn, "s1", version=3)
        actions = conn.execute(
            "SELECT action, entity_id, school_id FROM audit_log WHERE entity = 'cards' ORDER BY id"
        ).fetchall()
    assert bytes.fromhex(new_key) in blob and bytes.fromhex(CARD_ALICE) not in blob
    assert actions == [("revoke", CARD_ALICE, "s1"), ("create", new_key, "s1")]


def test_deactivating_a_person_revokes_their_cards(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    r = _call(c, w, "school_admin", "DELETE", f"/api/v1/people/{w.ids['alice']}")
    assert r.status_code == 200 and r.json()["active"] is False
    with psycopg.connect(database_url) as conn:
        assert bytes.fromhex(CARD_ALICE) not in registry.compile_whitelist(conn, "s1", 4)
        row = conn.execute(
            "SELECT revoke_reason FROM cards WHERE card_key = %s", (CARD_ALICE,)
        ).fetchone()
    assert row == ("left",)
    active = _call(c, w, "school_admin", "GET", "/api/v1/people?active=true").json()
    assert [p["full_name"] for p in active["items"]] == ["Amir Amirov"]


def test_meal_eligibility_sets_the_whitelist_category(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    alice = w.ids["alice"]
    r = _call(
        c,
        w,
        "school_admin",
        "POST",
        "/api/v1/meal-categories",
        {"school_id": "s1", "kind": "reduced", "name": "Half", "price": "250.00"},
    )
    assert r.status_code == 201 and r.json()["code"] == 2, r.text
    r = _call(
        c,
        w,
        "school_admin",
        "POST",
        f"/api/v1/people/{alice}/eligibility",
        {"category_id": r.json()["id"], "valid_from": "2025-09-01"},
    )
    assert r.status_code == 201, r.text
    assert _call(c, w, "guardian", "GET", f"/api/v1/people/{alice}").json()["meal_category"] == 2
    hist = _call(c, w, "guardian", "GET", f"/api/v1/people/{alice}/eligibility").json()
    assert hist["total"] == 1 and hist["items"][0]["granted_by"] == w.users["school_admin"]


def test_consent_record_withdraw_and_record_again(world: tuple[TestClient, World]) -> None:
    c, w = world
    alice, cid = w.ids["alice"], w.ids["consent_id"]
    r = _call(c, w, "guardian", "POST", f"/api/v1/consents/{cid}/withdraw")
    assert r.status_code == 200 and r.json()["withdrawn_by"] == w.users["guardian"]
    assert _call(c, w, "guardian", "POST", f"/api/v1/consents/{cid}/withdraw").status_code == 409
    live = _call(c, w, "school_admin", "GET", "/api/v1/consents?live=true").json()
    assert live["total"] == 0
    r = _call(c, w, "guardian", "POST", "/api/v1/consents", {"person_id": alice, "method": "face"})
    assert r.status_code == 201 and r.json()["granted_by"] == w.users["guardian"]
    r = _call(
        c,
        w,
        "school_admin",
        "POST",
        "/api/v1/consents",
        {"person_id": alice, "method": "palm", "guardian_id": w.users["guardian"]},
    )
    assert r.status_code == 201, r.text
    everything = _call(c, w, "guardian", "GET", f"/api/v1/consents?person={alice}").json()
    assert everything["total"] == 3


def test_ratings_one_per_child_dish_and_day(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    body = {
        "person_id": w.ids["alice"],
        "dish_id": w.ids["dish_id"],
        "served_on": "2025-10-09",
        "score": 4,
    }
    # not served that day (no meal receipt names the dish): refused, nothing stored (D28-G)
    r = _call(c, w, "guardian", "POST", "/api/v1/ratings", body)
    assert r.status_code == 422 and "not served" in r.text, r.text
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
            " meal_category, occurred_at, day, dish_id) VALUES"
            " ('cant-1', 1, 1, 's1', %s, 1, '2025-10-09T06:00:00Z', '2025-10-09', %s)",
            (w.ids["alice"], w.ids["dish_id"]),
        )
    body = {
        "person_id": w.ids["alice"],
        "dish_id": w.ids["dish_id"],
        "served_on": "2025-10-09",
        "score": 4,
        "comment": "tasty",
    }
    r = _call(c, w, "guardian", "POST", "/api/v1/ratings", body)
    assert r.status_code == 201 and r.json()["rated_by"] == w.users["guardian"], r.text
    assert _call(c, w, "guardian", "POST", "/api/v1/ratings", body).status_code == 409
    for role in ("guardian", "school_admin", "canteen_operator", "district_authority"):
        got = _call(c, w, role, "GET", f"/api/v1/ratings?dish={w.ids['dish_id']}").json()
        assert [x["score"] for x in got["items"]] == [4], role


def test_pagination_and_filters(world: tuple[TestClient, World]) -> None:
    c, w = world
    for i in range(7):
        r = _call(
            c,
            w,
            "school_admin",
            "POST",
            "/api/v1/people",
            {"school_id": "s1", "kind": "staff", "full_name": f"Staff {i}"},
        )
        assert r.status_code == 201
    pages = [
        _call(c, w, "school_admin", "GET", f"/api/v1/people?kind=staff&limit=3&offset={o}").json()
        for o in (0, 3, 6)
    ]
    assert [p["total"] for p in pages] == [7, 7, 7]
    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    names = [x["full_name"] for p in pages for x in p["items"]]
    assert names == [f"Staff {i}" for i in range(7)]
    q = _call(c, w, "school_admin", "GET", "/api/v1/people?q=ali").json()
    assert [x["full_name"] for x in q["items"]] == ["Alice Aliyeva"]
    q = _call(c, w, "school_admin", "GET", "/api/v1/people?q=%25").json()  # a literal %
    assert q["total"] == 0
    cls = _call(c, w, "school_admin", "GET", f"/api/v1/people?class={w.ids['class_id']}").json()
    assert [x["id"] for x in cls["items"]] == [w.ids["alice"]]
