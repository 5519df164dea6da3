"""Issue #13 items 13, 14 and 16 (API side): values people type are checked by one rule each
(cloud/domain/formats.py), with a clear 422 that changes nothing; school settings the reports
depend on can be set; database refusals never name a constraint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_world import World, build, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.api.dberrors import response_for
from cloud.domain import formats
from cloud.domain.cardkey import card_key
from cloud.imports import plan as import_plan
from cloud.settings import Settings

# what a constraint, index or SQL detail looks like in a message
INTERNALS = ("_check", "_key", "_idx", "_fkey", "constraint", "is_time_zone", "violates", "Key (")


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w


def _rows(url: str, q: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(q, params).fetchall()


def _msgs(r: Any) -> str:
    detail = r.json()["detail"]
    return detail if isinstance(detail, str) else " | ".join(d["msg"] for d in detail)


def _no_internals(text: str) -> None:
    for word in INTERNALS:
        assert word not in text, text


# ---- item 13: URLs people give --------------------------------------------------------------
BAD_URLS = [
    "javascript:alert(1)",
    "JavaScript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "http://cdn.example.kz/plov.jpg",
    "//evil.example/plov.jpg",
    "https://user:pw@cdn.example.kz/plov.jpg",
    "https:///plov.jpg",
    "/media/../settings.py",
    "/etc/passwd",
    "https://cdn.example.kz/a b.jpg",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_dish_photo_url_must_be_https_or_a_media_path(
    world: tuple[TestClient, World], database_url: str, url: str
) -> None:
    c, w = world
    dish = w.ids["dish_id"]
    before = _rows(database_url, "SELECT * FROM dishes ORDER BY id")
    audit = _rows(database_url, "SELECT count(*) FROM audit_log")
    body = {"school_id": "s1", "name_kk": "Палау", "name_ru": "Плов", "price": 300}
    r = c.post("/api/v1/dishes", headers=w.auth("school_admin"), json={**body, "photo_url": url})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "photo_url"]
    assert "https://host/" in _msgs(r) or "user name or password" in _msgs(r)
    r = c.patch(f"/api/v1/dishes/{dish}", headers=w.auth("school_admin"), json={"photo_url": url})
    assert r.status_code == 422, r.text
    assert _rows(database_url, "SELECT * FROM dishes ORDER BY id") == before
    assert _rows(database_url, "SELECT count(*) FROM audit_log") == audit


@pytest.mark.parametrize(
    "url", ["https://cdn.example.kz/menu/plov.jpg?w=300", "/media/dishes/12/plov.jpg"]
)
def test_https_and_media_photo_urls_are_kept(world: tuple[TestClient, World], url: str) -> None:
    c, w = world
    r = c.patch(
        f"/api/v1/dishes/{w.ids['dish_id']}",
        headers=w.auth("school_admin"),
        json={"photo_url": url},
    )
    assert r.status_code == 200, r.text
    assert r.json()["photo_url"] == url


# ---- item 14: school settings ---------------------------------------------------------------
def test_a_school_admin_sets_the_day_start_the_reports_use(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    r = c.patch("/api/v1/schools/s1", headers=w.auth("school_admin"), json={"day_start": "09:15"})
    assert r.status_code == 200, r.text
    assert r.json()["day_start"] == "09:15"
    got = _rows(database_url, "SELECT to_char(day_start, 'HH24:MI') FROM schools WHERE id = 's1'")
    assert got == [("09:15",)]
    audited = _rows(
        database_url,
        "SELECT before->>'day_start', after->>'day_start', school_id FROM audit_log"
        " WHERE entity = 'schools' AND action = 'update'",
    )
    assert audited == [("08:30:00", "09:15:00", "s1")]
    assert c.get("/api/v1/schools/s1", headers=w.auth("school_admin")).json()["day_start"] == (
        "09:15"
    )
    # a new school gets the day start it is given
    new = {"id": "s9", "name": "School 9", "timezone": "Asia/Aqtobe", "day_start": "07:45"}
    r = c.post("/api/v1/schools", headers=w.auth("platform_admin"), json=new)
    assert r.status_code == 201, r.text
    assert (r.json()["day_start"], r.json()["timezone"]) == ("07:45", "Asia/Aqtobe")


@pytest.mark.parametrize("value", ["9:15", "24:00", "08:60", "08:30:00", "8h30", "", 830])
def test_a_bad_day_start_is_a_clear_422(
    world: tuple[TestClient, World], database_url: str, value: Any
) -> None:
    c, w = world
    before = _rows(database_url, "SELECT * FROM schools ORDER BY id")
    r = c.patch("/api/v1/schools/s1", headers=w.auth("school_admin"), json={"day_start": value})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["body", "day_start"]
    assert _rows(database_url, "SELECT * FROM schools ORDER BY id") == before


@pytest.mark.parametrize("tz", ["Mars/Base", "asia/almaty", "localtime", "../../etc/passwd", "+05"])
def test_a_bad_time_zone_is_a_clear_422_without_constraint_names(
    world: tuple[TestClient, World], database_url: str, tz: str
) -> None:
    c, w = world
    before = _rows(database_url, "SELECT * FROM schools ORDER BY id")
    r = c.post(
        "/api/v1/schools",
        headers=w.auth("platform_admin"),
        json={"id": "s8", "name": "X", "timezone": tz},
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "timezone"]
    assert "unknown time zone" in _msgs(r) and "Asia/Almaty" in _msgs(r)
    _no_internals(_msgs(r))
    r = c.patch("/api/v1/schools/s1", headers=w.auth("platform_admin"), json={"timezone": tz})
    assert r.status_code == 422, r.text
    assert _rows(database_url, "SELECT * FROM schools ORDER BY id") == before


def test_a_school_admin_is_told_the_time_zone_is_not_theirs_to_change(
    world: tuple[TestClient, World], database_url: str
) -> None:
    """Before, the time zone was silently dropped from a school admin's change (200)."""
    c, w = world
    before = _rows(database_url, "SELECT * FROM schools ORDER BY id")
    r = c.patch(
        "/api/v1/schools/s1",
        headers=w.auth("school_admin"),
        json={"name": "Renamed", "timezone": "Asia/Aqtobe"},
    )
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == "only a platform admin may change timezone"
    assert _rows(database_url, "SELECT * FROM schools ORDER BY id") == before


def test_database_refusals_name_the_field_not_the_constraint(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    r = c.post("/api/v1/regions", headers=w.auth("platform_admin"), json={"name": "Almaty"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == "a record with this name already exists"
    r = c.post(
        "/api/v1/districts",
        headers=w.auth("platform_admin"),
        json={"region_id": 999999, "name": "Ghost"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "region_id"]
    assert _msgs(r) == "region_id refers to a missing record"
    r = c.delete(f"/api/v1/districts/{w.ids['district_id']}", headers=w.auth("platform_admin"))
    assert r.status_code == 409, r.text
    assert r.json()["detail"] == "still referenced by other records: remove or move them first"


@pytest.mark.parametrize(
    ("sql", "field", "msg"),
    [
        ("UPDATE schools SET timezone = 'Mars/Base'", "timezone", "timezone is not allowed here"),
        ("UPDATE people SET access_profile = 999", "access_profile", "access_profile is not"),
        ("UPDATE people SET full_name = NULL", "full_name", "full_name is required"),
        (
            "INSERT INTO classes (school_id, name) VALUES ('nowhere', 'x')",
            "school_id",
            "school_id refers",
        ),
        ("UPDATE dishes SET price = 1e20", None, "a number is out of range"),
    ],
)
def test_every_database_refusal_is_mapped_without_internals(
    world: tuple[TestClient, World], database_url: str, sql: str, field: str | None, msg: str
) -> None:
    with psycopg.connect(database_url) as conn, pytest.raises(psycopg.Error) as got:
        conn.execute(sql)
    resp = response_for(got.value)
    assert resp.status_code == 422
    detail = json.loads(bytes(resp.body))["detail"][0]
    assert detail["loc"] == (["body"] if field is None else ["body", field])
    assert detail["msg"].startswith(msg)
    _no_internals(detail["msg"])


# ---- item 16: one rule per value ------------------------------------------------------------
UIDS = [
    ("04A1B2C3", True),  # 4 bytes (single size)
    ("04:a1:b2:c3:d4:e5:f6", True),  # 7 bytes (double size), as a reader prints it
    ("04-A1-B2-C3-D4-E5-F6-07-18-29", True),  # 10 bytes (triple size)
    ("0102030405", False),  # 5 bytes: the API took it, the import refused it
    ("010203040506", False),  # 6
    ("0102030405060708", False),  # 8
    ("04A1B2", False),
    ("04A1B2C3Z", False),
    ("zz", False),
]


@pytest.mark.parametrize(("uid", "ok"), UIDS)
def test_the_api_and_the_import_take_the_same_card_uids(
    world: tuple[TestClient, World], database_url: str, uid: str, ok: bool
) -> None:
    c, w = world
    amir = w.ids["amir"]
    r = c.post(f"/api/v1/people/{amir}/cards", headers=w.auth("school_admin"), json={"uid": uid})
    try:
        raw = formats.check_card_uid(uid)
        shared = True
    except ValueError as exc:
        shared = False
        why = str(exc)
    assert shared == ok
    if ok:
        assert r.status_code == 201, r.text
        assert r.json()["card_key"] == card_key(b"k" * 32, raw)
    else:
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "uid"]
        assert why in _msgs(r)
        assert "4, 7 or 10 bytes of hex" in _msgs(r)
    # the importer gives the same verdict with the same words
    assert import_plan.check_card_uid is formats.check_card_uid


@pytest.mark.parametrize("token", ["wrongtoken123", "x" * 15, "x" * 129, "bad token with spaces!"])
def test_a_malformed_claim_token_gets_the_one_line_message(
    world: tuple[TestClient, World], token: str
) -> None:
    c, _w = world
    r = c.post("/api/v1/provision", json={"device": "gate-1", "token": token})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "token"]
    assert formats.CLAIM_TOKEN_RULE in _msgs(r)
    assert "String should match pattern" not in _msgs(r)
    assert token not in _msgs(r)  # a token is a secret: never echoed
