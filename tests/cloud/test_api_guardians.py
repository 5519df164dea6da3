"""Issue #13 item 3: a school links only the guardians it may see (created by its admins or
already linked to one of its people); every other account id, another school's guardian or a
user of another role, answers exactly as an id that does not exist, and nothing changes."""

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
        # a guardian of school 2 (Bob's), and one a school-3 admin created (linked to no one)
        w.ids["dad2"] = add_user(conn, "dad2@example.kz", "guardian")
        conn.execute(
            "INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)",
            (w.ids["dad2"], w.ids["bob"]),
        )
        w.ids["made3"] = add_user(conn, "made3@example.kz", "guardian")
        conn.execute("UPDATE users SET created_by_school = 's3' WHERE id = %s", (w.ids["made3"],))
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w


def _state(url: str) -> list[Any]:
    with psycopg.connect(url) as conn:
        return [
            conn.execute("SELECT * FROM guardian_students ORDER BY 1, 2").fetchall(),
            conn.execute("SELECT count(*) FROM audit_log").fetchall(),
        ]


def _link(c: TestClient, w: World, role: str, person: int, guardian: int) -> Any:
    return c.post(
        f"/api/v1/people/{person}/guardians",
        headers=w.auth(role),
        json={"guardian_id": guardian},
    )


@pytest.mark.parametrize(
    "who",
    [
        "dad2",  # a guardian of another school's pupil
        "made3",  # a guardian another school created
        "admin3",  # another school's admin (not a guardian)
        "platform_admin",  # not a guardian
        "canteen_operator",  # this school's own staff: not a guardian either
    ],
)
def test_an_account_the_school_may_not_see_answers_as_a_missing_id(
    world: tuple[TestClient, World], database_url: str, who: str
) -> None:
    c, w = world
    account = w.users[who] if who in w.users else w.ids[who]
    amir = w.ids["amir"]
    before = _state(database_url)
    missing = _link(c, w, "school_admin", amir, MISSING)
    r = _link(c, w, "school_admin", amir, account)
    assert (r.status_code, missing.status_code) == (404, 404), r.text
    # the same answer, word for word, apart from the id asked for
    assert r.json()["detail"].replace(str(account), "N") == missing.json()["detail"].replace(
        str(MISSING), "N"
    )
    assert r.json()["detail"] == f"guardian {account} not found"
    text = r.text.lower()
    assert "@" not in text and "role" not in text and "admin" not in text
    assert _state(database_url) == before


def test_a_school_links_the_guardians_it_created_or_already_has(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    amir = w.ids["amir"]
    # created by this school's admin through the API: visible, linkable, listed
    r = c.post(
        "/api/v1/users",
        headers=w.auth("school_admin"),
        json={"email": "dad1@example.kz", "password": "a long passphrase", "role": "guardian"},
    )
    assert r.status_code == 201, r.text
    dad1 = r.json()["id"]
    listed = c.get("/api/v1/users?role=guardian", headers=w.auth("school_admin")).json()
    assert {u["email"] for u in listed["items"]} == {"mum@qadam.kz", "dad1@example.kz"}
    r = _link(c, w, "school_admin", amir, dad1)
    assert r.status_code == 201, r.text
    assert r.json()["email"] == "dad1@example.kz"
    # already a guardian of a pupil of this school (Alice's mum): linkable to her brother
    r = _link(c, w, "school_admin", amir, w.users["guardian"])
    assert r.status_code == 201, r.text
    with psycopg.connect(database_url) as conn:
        made = conn.execute("SELECT created_by_school FROM users WHERE id = %s", (dad1,)).fetchone()
        audited = conn.execute(
            "SELECT count(*) FROM audit_log WHERE entity = 'users' AND action = 'create'"
            " AND entity_id = %s AND school_id = 's1'",
            (str(dad1),),
        ).fetchone()
    assert made == ("s1",) and audited == (1,)
    # another school's admin still cannot see dad1
    r = _link(c, w, "school_admin", amir, w.ids["dad2"])
    assert r.status_code == 404


def test_the_platform_admin_links_any_guardian_and_is_told_of_other_roles(
    world: tuple[TestClient, World],
) -> None:
    c, w = world
    r = _link(c, w, "platform_admin", w.ids["amir"], w.ids["dad2"])
    assert r.status_code == 201, r.text
    r = _link(c, w, "platform_admin", w.ids["amir"], w.ids["admin3"])
    assert r.status_code == 422, r.text
    r = _link(c, w, "platform_admin", w.ids["amir"], MISSING)
    assert r.status_code == 404, r.text
