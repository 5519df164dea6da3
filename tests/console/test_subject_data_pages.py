"""The person page's data-subject buttons in-process (D29-B): who sees and may use them (the
API's export/erase roles), scope (another school's person is "not found"), the JSON download
(audited), the deactivation an erasure needs, and the erasure itself: refused without a reason,
with a reason that names the person, unconfirmed or for an active person, changing nothing;
done once, with the reason in the audit row. The same in Chromium: test_subject_data_browser.py."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient

EMAILS = {
    "platform_admin": "root@qadam.kz",
    "district_authority": "d1@qadam.kz",
    "school_admin": "admin1@qadam.kz",
    "canteen_operator": "cook1@qadam.kz",
}
REASON = "Written request of the parent, 1 December 2026, No. 14"


def _as(client: TestClient, role: str) -> TestClient:
    assert sign_in(client, EMAILS[role], PASSWORD).status_code == 303
    return client


def _snapshot(url: str, person_id: int) -> tuple[Any, ...]:
    """What a refused request must leave as it was."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT p.full_name, p.active, p.erased_at,"
            " (SELECT count(*) FROM cards WHERE person_id = p.id),"
            " (SELECT count(*) FROM cards WHERE person_id = p.id AND revoked_at IS NULL),"
            " (SELECT count(*) FROM guardian_students WHERE person_id = p.id),"
            " (SELECT count(*) FROM audit_log WHERE action NOT IN ('login', 'logout'))"
            " FROM people p WHERE p.id = %s",
            (person_id,),
        ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        ("platform_admin", True),
        ("school_admin", True),
        ("district_authority", False),
        ("canteen_operator", False),
    ],
)
def test_who_sees_and_may_use_the_buttons(
    client: TestClient, world: World, database_url: str, role: str, allowed: bool
) -> None:
    c = _as(client, role)
    alice = world.ids["alice"]
    page = c.get(f"/people/{alice}")
    assert page.status_code == 200
    assert ('id="personal-data"' in page.text) is allowed
    before = _snapshot(database_url, alice)
    for action in ("export", "deactivate", "erase"):
        r = c.post(f"/people/{alice}/{action}", data={"reason": REASON, "confirm": "yes"},
                   headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
        expected = {"export": 200, "deactivate": 303, "erase": 303}[action] if allowed else 403
        assert r.status_code == expected, action
    if not allowed:
        assert _snapshot(database_url, alice) == before


def test_export_downloads_the_apis_json_and_is_audited(
    client: TestClient, world: World, database_url: str
) -> None:
    c = _as(client, "school_admin")
    alice = world.ids["alice"]
    r = c.post(f"/people/{alice}/export", headers=SAME_ORIGIN)
    assert r.status_code == 200
    assert r.headers["content-disposition"] == f'attachment; filename="person-{alice}.json"'
    assert r.headers["cache-control"] == "no-store"
    doc = json.loads(r.text)
    assert doc["person"]["full_name"] == "Alice Aliyeva"
    assert {"cards", "guardian_students", "consents", "events"} <= set(doc["tables"])
    with psycopg.connect(database_url) as conn:
        audited = conn.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'export' AND entity = 'people'"
            " AND entity_id = %s",
            (str(alice),),
        ).fetchone()
    assert audited == (1,)
    # the cross-site form post a foreign page could make is refused
    foreign = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    assert c.post(f"/people/{alice}/export", headers=foreign).status_code == 403


def test_another_schools_person_is_not_found(
    client: TestClient, world: World, database_url: str
) -> None:
    c = _as(client, "school_admin")  # school s1
    bob = world.ids["bob"]  # s2
    before = _snapshot(database_url, bob)
    for action in ("export", "deactivate", "erase"):
        r = c.post(f"/people/{bob}/{action}", data={"reason": REASON, "confirm": "yes"},
                   headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
        assert r.status_code == 404, action
    assert c.post("/people/999999/export", headers=SAME_ORIGIN).status_code == 404
    assert _snapshot(database_url, bob) == before


def test_erasure_refusals_change_nothing(
    client: TestClient, world: World, database_url: str
) -> None:
    c = _as(client, "school_admin")
    alice = world.ids["alice"]
    page = c.get(f"/people/{alice}").text
    assert 'id="erase-form"' not in page and 'id="deactivate"' in page  # active: no erase yet
    before = _snapshot(database_url, alice)
    r = c.post(f"/people/{alice}/erase", data={"reason": REASON, "confirm": "yes"},
               headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 409 and "Deactivate the person first" in r.text
    assert _snapshot(database_url, alice) == before

    assert c.post(f"/people/{alice}/deactivate", headers=SAME_ORIGIN).status_code == 200
    deactivated = _snapshot(database_url, alice)
    assert deactivated[1] is False and deactivated[4] == 0  # inactive, no card works
    page = c.get(f"/people/{alice}").text
    assert 'id="erase-form"' in page
    cases = [
        ({"reason": "", "confirm": "yes"}, "Say why the data is erased"),
        ({"reason": " ok ", "confirm": "yes"}, "Say why the data is erased"),
        ({"reason": "x" * 501, "confirm": "yes"}, "Say why the data is erased"),
        ({"reason": "Request from the mother of Alice", "confirm": "yes"}, "must not name"),
        ({"reason": "Aliyeva family asked by letter", "confirm": "yes"}, "must not name"),
        ({"reason": REASON}, "Tick the box"),
        ({"reason": REASON, "confirm": "no"}, "Tick the box"),
    ]
    for data, says in cases:
        r = c.post(f"/people/{alice}/erase", data=data, headers=SAME_ORIGIN)
        assert r.status_code == 422, data
        assert says in r.text, data
        assert _snapshot(database_url, alice) == deactivated, data
    # the typed reason is kept in the form for the next try
    r = c.post(f"/people/{alice}/erase", data={"reason": REASON}, headers=SAME_ORIGIN)
    assert f">{REASON}</textarea>" in r.text


def test_erasure_with_its_reason_in_the_audit_log(
    client: TestClient, world: World, database_url: str
) -> None:
    c = _as(client, "school_admin")
    alice = world.ids["alice"]
    assert c.post(f"/people/{alice}/deactivate", headers=SAME_ORIGIN).status_code == 200
    r = c.post(f"/people/{alice}/erase", data={"reason": f"  {REASON}\n", "confirm": "yes"},
               headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == f"/people/{alice}?done=erased"
    page = c.get(r.headers["location"]).text
    assert "personal data is erased" in page
    assert f"Person No. {alice}" in page and "Alice" not in page
    assert 'id="erased-note"' in page and 'id="erase-form"' not in page
    name, active, erased_at, cards, _, links, _ = _snapshot(database_url, alice)
    assert (name, active, cards, links) == ("", False, 0, 0) and erased_at is not None
    with psycopg.connect(database_url) as conn:
        after = conn.execute(
            "SELECT after FROM audit_log WHERE action = 'erase' AND entity_id = %s",
            (str(alice),),
        ).fetchone()
    assert after is not None and after[0]["reason"] == REASON  # spaces folded
    assert after[0]["removed"]["cards"] == 1
    again = c.post(f"/people/{alice}/erase", data={"reason": REASON, "confirm": "yes"},
                   headers=SAME_ORIGIN)  # fmt: skip
    assert again.status_code == 409 and "already erased" in again.text


def test_the_section_in_kazakh_and_russian(client: TestClient, world: World) -> None:
    for lang, heading, button in (
        ("kk", "Дербес деректер", "Барлық деректерді жүктеп алу (JSON)"),
        ("ru", "Персональные данные", "Скачать все данные (JSON)"),
    ):
        assert sign_in(client, EMAILS["school_admin"], PASSWORD, lang).status_code == 303
        client.cookies.set("lang", lang)
        page = client.get(f"/people/{world.ids['alice']}", headers={"Accept-Language": lang})
        assert heading in page.text and button in page.text, lang
