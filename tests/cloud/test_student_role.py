"""The student role (issue #16 "For a student", D28-O) through the API: Alice's own account
reads her own feed, balance, ledger, her school's menu and learning resources, and rates a dish
she was served; another pupil is "not found" exactly like an id that does not exist; staff
routes are refused with 403; and the database refuses an account linked to a pupil of another
school or to a staff member."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_world import World, add_user, build, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.settings import Settings

MISSING = 987_654_321


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    with psycopg.connect(database_url) as conn:
        # Alice was served the plov on 9 October; Amir too (his rating must stay his)
        for seq, person in ((1, w.ids["alice"]), (2, w.ids["amir"])):
            conn.execute(
                "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
                " occurred_at, day, dish_id) VALUES ('cant-s', 1, %s, 's1', %s,"
                " '2025-10-09T06:00:00Z', '2025-10-09', %s)",
                (seq, person, w.ids["dish_id"]),
            )
        conn.execute(
            "SELECT ledger_post(%s, 'top_up', 500, 'cash', NULL, 'student:1')", (w.ids["alice"],)
        )
        conn.execute(
            "INSERT INTO learning_resources (school_id, position, title, url) VALUES"
            " ('s1', 0, 'Bilimland', 'https://bilimland.kz/'),"
            " ('s2', 0, 'Other school', 'https://example.org/')"
        )
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w


def test_reads_own_feed_balance_ledger_menu_and_learning(world: tuple[TestClient, World]) -> None:
    c, w = world
    h, alice = w.auth("student"), w.ids["alice"]
    me = c.get("/api/v1/auth/me", headers=h).json()
    assert me["role"] == "student"
    events = c.get("/api/v1/events", headers=h).json()["items"]
    assert events and {e["person"] for e in events} == {alice}  # not Amir's, same school
    balance = c.get(f"/api/v1/people/{alice}/balance", headers=h)
    # 500 paid in, the 350 plov she was served charged
    assert balance.status_code == 200 and balance.json()["balance"] == "150.00"
    ledger = c.get(f"/api/v1/people/{alice}/ledger", headers=h)
    assert ledger.status_code == 200
    assert sorted(e["amount"] for e in ledger.json()["items"]) == ["-350.00", "500.00"]
    assert c.get("/api/v1/schools/s1/menu", headers=h).status_code == 200
    dishes = c.get("/api/v1/dishes", headers=h).json()["items"]
    assert {d["school_id"] for d in dishes} == {"s1"}
    learning = c.get("/api/v1/schools/s1/learning", headers=h)
    assert learning.json() == [{"title": "Bilimland", "url": "https://bilimland.kz/"}]


def test_rates_only_own_served_dish(world: tuple[TestClient, World]) -> None:
    c, w = world
    h = w.auth("student")
    body = {"dish_id": w.ids["dish_id"], "served_on": "2025-10-09", "score": 5}
    mine = c.post("/api/v1/ratings", headers=h, json={**body, "person_id": w.ids["alice"]})
    assert mine.status_code == 201, mine.text
    amirs = c.post("/api/v1/ratings", headers=h, json={**body, "person_id": w.ids["amir"]})
    assert amirs.status_code == 404
    ratings = c.get("/api/v1/ratings", headers=h).json()["items"]
    assert [r["person_id"] for r in ratings] == [w.ids["alice"]]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/people/{amir}/balance",  # a classmate
        "/api/v1/people/{amir}/ledger",
        "/api/v1/people/{cara}/balance",  # a pupil of another school
        "/api/v1/people/{missing}/balance",  # no one
        "/api/v1/schools/s2/menu",  # another school
        "/api/v1/schools/s2/learning",
        "/api/v1/schools/nope/learning",
    ],
)
def test_another_pupil_or_school_is_not_found(world: tuple[TestClient, World], path: str) -> None:
    c, w = world
    url = path.format(amir=w.ids["amir"], cara=w.ids["cara"], missing=MISSING)
    r = c.get(url, headers=w.auth("student"))
    assert r.status_code == 404, r.text


def test_events_of_another_pupil_are_empty(world: tuple[TestClient, World]) -> None:
    c, w = world
    r = c.get(f"/api/v1/events?person={w.ids['amir']}", headers=w.auth("student"))
    assert r.status_code == 200 and r.json()["items"] == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/people", None),
        ("GET", "/api/v1/people/{alice}", None),  # not even herself: the app shows the rest
        ("GET", "/api/v1/people/{alice}/cards", None),
        ("GET", "/api/v1/people/{alice}/restrictions", None),
        ("PUT", "/api/v1/people/{alice}/restrictions", {"allergens": []}),
        ("POST", "/api/v1/people/{alice}/balance/top-up", {"amount": "1", "reason": "x"}),
        ("GET", "/api/v1/consents", None),
        ("GET", "/api/v1/devices", None),
        ("GET", "/api/v1/schools", None),
        ("PUT", "/api/v1/schools/s1/learning", {"resources": []}),
        ("POST", "/api/v1/users", {"email": "x@y.kz", "password": "long enough pw",
                                   "role": "student"}),
    ],
)  # fmt: skip
def test_staff_and_guardian_routes_are_refused(
    world: tuple[TestClient, World], method: str, path: str, body: Any
) -> None:
    c, w = world
    url = path.format(alice=w.ids["alice"])
    r = c.request(method, url, headers=w.auth("student"), json=body)
    assert r.status_code == 403, r.text


def test_left_pupil_sees_no_one(world: tuple[TestClient, World], database_url: str) -> None:
    c, w = world
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE people SET active = false WHERE id = %s", (w.ids["alice"],))
    r = c.get(f"/api/v1/people/{w.ids['alice']}/balance", headers=w.auth("student"))
    assert r.status_code == 404
    assert c.get("/api/v1/events", headers=w.auth("student")).json()["items"] == []


@pytest.mark.parametrize("who", ["cara", "bob", "amir_as_guardian"])
def test_database_refuses_a_wrong_link(world: tuple[TestClient, World], database_url: str,
                                       who: str) -> None:  # fmt: skip
    _, w = world
    with psycopg.connect(database_url) as conn:
        if who == "amir_as_guardian":  # a guardian account cannot be a student's
            user, person = w.users["guardian"], w.ids["amir"]
        else:  # a pupil of another school; a staff member of another school
            user = add_user(conn, f"{who}@s1.pupil", "student", school_id="s1")
            person = w.ids[who]
        conn.commit()
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO student_accounts (user_id, person_id) VALUES (%s, %s)",
                (user, person),
            )


def test_school_admin_replaces_the_learning_list(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    h, url = w.auth("school_admin"), "/api/v1/schools/s1/learning"
    for bad in ({"title": "Plain", "url": "http://example.org/"},  # not https
                {"title": "", "url": "https://example.org/"},
                {"title": "Script", "url": "javascript:alert(1)"}):  # fmt: skip
        r = c.put(url, headers=h, json={"resources": [bad]})
        assert r.status_code == 422, (bad, r.text)
    assert [x["title"] for x in c.get(url, headers=h).json()] == ["Bilimland"]  # unchanged
    new = [{"title": "Daryn", "url": "https://daryn.online/"},
           {"title": "Bilimland", "url": "https://bilimland.kz/"}]  # fmt: skip
    r = c.put(url, headers=h, json={"resources": new})
    assert r.status_code == 200 and r.json() == new  # in the order given
    assert c.get(url, headers=w.auth("student")).json() == new
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_log WHERE entity = 'learning_resources'"
                           " AND school_id = 's1'").fetchone()  # fmt: skip
    assert row == (1,)
