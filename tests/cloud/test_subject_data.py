"""A data subject's export and erasure (D28-K): every table about a person has an erasure
rule; the export holds their rows; erasure needs a deactivated person, removes what names them,
keeps the counted facts, redacts the audit trail and changes nothing else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_world import World, build, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.domain.subject_data import ERASURE, person_tables
from cloud.settings import Settings


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World]]:
    w = build(database_url)
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w


def _count(url: str, q: str, *args: Any) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(q, args).fetchone()
        assert row is not None
        return int(row[0])


def test_every_table_about_a_person_has_an_erasure_rule(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        tables = person_tables(conn)
    assert "events" in tables and "cards" in tables  # the catalogue query finds both kinds
    assert sorted(set(tables) - set(ERASURE)) == [], "decide what erasure does to these"
    assert sorted(set(ERASURE) - set(tables)) == [], "rules for tables that do not exist"


def test_export_holds_the_persons_rows_and_is_audited(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    alice = w.ids["alice"]
    r = c.get(f"/api/v1/people/{alice}/export", headers=w.auth("school_admin"))
    assert r.status_code == 200, r.text
    assert "attachment" in r.headers["content-disposition"]
    doc = json.loads(r.content)
    assert doc["person"]["full_name"] == "Alice Aliyeva"
    assert [row["card_key"] for row in doc["tables"]["cards"]] == [w.ids["card_key"]]
    assert len(doc["tables"]["events"]) == 1
    assert doc["tables"]["guardian_students"][0]["guardian_id"] == w.ids["guardian_id"]
    assert doc["tables"]["consents"][0]["method"] == "face"
    assert all(row.get("person_id") in (None, alice) for rows in doc["tables"].values()
               for row in rows)  # fmt: skip
    n = _count(database_url, "SELECT count(*) FROM audit_log WHERE action = 'export'"
               " AND entity = 'people' AND entity_id = %s", str(alice))  # fmt: skip
    assert n == 1
    # another school's admin, a canteen operator, a guardian: nothing
    assert c.get(f"/api/v1/people/{w.ids['cara']}/export",
                 headers=w.auth("school_admin")).status_code == 404  # fmt: skip
    for role in ("canteen_operator", "guardian", "district_authority"):
        assert c.get(f"/api/v1/people/{alice}/export", headers=w.auth(role)).status_code == 403


def _snapshot(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        return {
            t: conn.execute(f'SELECT x::text FROM "{t}" x ORDER BY 1').fetchall()  # noqa: S608
            for (t,) in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename NOT IN ('sessions', 'audit_log')"
            )
        }


def test_erasure_needs_a_deactivated_person_and_keeps_the_counts(
    world: tuple[TestClient, World], database_url: str
) -> None:
    c, w = world
    alice, h = w.ids["alice"], w.auth("school_admin")
    c.patch(f"/api/v1/people/{alice}", json={"full_name": "Alice B. Aliyeva"}, headers=h)
    before = _snapshot(database_url)
    r = c.post(f"/api/v1/people/{alice}/erase", headers=h)
    assert r.status_code == 409 and "deactivate" in r.text
    assert _snapshot(database_url) == before  # refused: nothing changed

    assert c.delete(f"/api/v1/people/{alice}", headers=h).status_code == 200
    events = _count(database_url, "SELECT count(*) FROM events WHERE person_id = %s", alice)
    with psycopg.connect(database_url) as conn:
        conn.execute("DELETE FROM whitelist_dirty")  # the deactivation's mark, consumed
    r = c.post(f"/api/v1/people/{alice}/erase", headers=h)
    assert r.status_code == 200, r.text
    removed = {"cards": 1, "consents": 1, "guardian_students": 1, "student_accounts": 1}
    assert r.json()["removed"] == removed  # student_accounts: her own account's link (D28-O)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT full_name, external_id, class_id, erased_at IS NOT NULL FROM people"
            " WHERE id = %s", (alice,)).fetchone()  # fmt: skip
        assert row == ("", None, None, True)
        assert conn.execute("SELECT count(*) FROM cards WHERE person_id = %s",
                            (alice,)).fetchone() == (0,)  # fmt: skip
        # no audit row names her any more; the erasure itself is recorded
        named = conn.execute(
            "SELECT count(*) FROM audit_log WHERE before::text LIKE '%%Aliyeva%%'"
            " OR after::text LIKE '%%Aliyeva%%'"
        ).fetchone()
        assert named == (0,)
        assert conn.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'erase' AND entity_id = %s",
            (str(alice),),
        ).fetchone() == (1,)
        # the whitelist is rebuilt (her card must leave the boards)
        dirty = conn.execute("SELECT count(*) FROM whitelist_dirty WHERE school_id = 's1'")
        assert dirty.fetchone() != (0,)
    assert _count(database_url, "SELECT count(*) FROM events WHERE person_id = %s", alice) == events
    # the other people are untouched
    amir = c.get(f"/api/v1/people/{w.ids['amir']}", headers=h).json()
    assert amir["full_name"] == "Amir Amirov"
    again = c.post(f"/api/v1/people/{alice}/erase", headers=h)
    assert again.status_code == 409 and "already" in again.text
