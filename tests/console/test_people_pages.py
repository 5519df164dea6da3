"""The console's People and cards pages in-process (HTML through a TestClient that posts like a
browser): who may open them (the API's roles), scope (another school's person is "not found"),
search, a typed card UID (refused when malformed, nothing changed), revoking (audited), and the
wait for a tap at a reader (cloud/domain/enrolment.py). The same in Chromium with a board in the
MicroPython VM: test_people_browser.py."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from api_world import CARD_BOB, PASSWORD, World
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient

from cloud.domain.cardkey import card_key

EMAILS = {
    "platform_admin": "root@qadam.kz",
    "district_authority": "d1@qadam.kz",
    "school_admin": "admin1@qadam.kz",
    "canteen_operator": "cook1@qadam.kz",
    "technician": "tech1@qadam.kz",
}
S1_KEY = b"k" * 32  # api_world's site key of school s1
HX = {**SAME_ORIGIN, "HX-Request": "true"}


def _as(client: TestClient, role: str) -> TestClient:
    assert sign_in(client, EMAILS[role], PASSWORD).status_code == 303
    return client


def _one(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _counts(url: str) -> tuple[int, int, int]:
    """cards, revoked cards, audit rows: what a refused request must leave as it was."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM cards), (SELECT count(*) FROM cards WHERE revoked_at"
            " IS NOT NULL), (SELECT count(*) FROM audit_log"
            " WHERE action NOT IN ('login', 'logout'))"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def _tap(
    url: str,
    device: str,
    seq: int,
    school: str,
    key: str,
    person: int | None = None,
    reason: str = "unknown_card",
    seconds_ago: int = 0,
) -> None:
    """An event as the ingest stores a board's tap (received now)."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
            " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at) VALUES"
            " (%s, 5, %s, %s, %s, %s, 'tap', 'in', %s, %s, now(), true, 1000,"
            " now() - make_interval(secs => %s))",
            (
                device,
                seq,
                school,
                person,
                key,
                "denied" if person is None else "granted",
                reason,
                seconds_ago,
            ),
        )


@pytest.mark.parametrize(
    ("role", "code", "cards"),
    [
        ("platform_admin", 200, True),
        ("district_authority", 200, False),  # the API's CardReader has no district
        ("school_admin", 200, True),
        ("canteen_operator", 200, False),
        ("technician", 403, False),  # the API's PeopleReader has no technician
    ],
)
def test_roles_as_the_api(
    client: TestClient, world: World, role: str, code: int, cards: bool
) -> None:
    c = _as(client, role)
    assert c.get("/people").status_code == code
    r = c.get(f"/people/{world.ids['alice']}")
    assert r.status_code == code
    if code == 200:
        assert "Alice Aliyeva" in r.text
        assert ('id="cards"' in r.text) is cards
        assert ("Add a card by its UID" in r.text) is (role in ("platform_admin", "school_admin"))
        # ledger: the API's LedgerReader (P, S); attendance: its ReportReader (P, D, S)
        assert ('id="attendance"' in r.text) is (role != "canteen_operator")


def test_people_of_another_school_are_not_found(
    client: TestClient, world: World, database_url: str
) -> None:
    c = _as(client, "school_admin")  # school s1
    before = _counts(database_url)
    assert c.get(f"/people/{world.ids['bob']}").status_code == 404  # s2
    assert c.get("/people/999999").status_code == 404
    assert c.get("/people?school=s2").status_code == 404
    r = c.post(f"/people/{world.ids['bob']}/cards", data={"uid": "04A23B1C"}, headers=SAME_ORIGIN)
    assert r.status_code == 404
    r = c.post(
        f"/people/{world.ids['bob']}/cards/{CARD_BOB}/revoke",
        data={"reason": "lost"},
        headers=SAME_ORIGIN,
    )
    assert r.status_code == 404
    # another person's card through this person's page is not found either
    r = c.post(
        f"/people/{world.ids['alice']}/cards/{CARD_BOB}/revoke",
        data={"reason": "lost"},
        headers=SAME_ORIGIN,
    )
    assert r.status_code == 404
    r = c.post(
        f"/people/{world.ids['bob']}/enrol-tap", data={"device": "gate-2"}, headers=SAME_ORIGIN
    )
    assert r.status_code == 404
    assert _counts(database_url) == before
    listed = c.get("/people?status=all").text
    assert "Alice Aliyeva" in listed and "Bob Bekov" not in listed


def test_district_sees_its_schools_only(client: TestClient, world: World) -> None:
    c = _as(client, "district_authority")  # d1: s1 and s2
    assert c.get(f"/people/{world.ids['bob']}").status_code == 200
    assert c.get(f"/people/{world.ids['cara']}").status_code == 404  # s3 is in d2
    r = c.get("/people?school=s2")
    assert "Bob Bekov" in r.text and "Alice" not in r.text
    assert 'id="p-school"' in r.text  # two schools: a picker
    assert c.get("/people?school=s3").status_code == 404


def test_writes_are_refused_to_roles_the_api_refuses(
    client: TestClient, world: World, database_url: str
) -> None:
    before = _counts(database_url)
    for role in ("district_authority", "canteen_operator"):
        c = _as(client, role)
        r = c.post(
            f"/people/{world.ids['alice']}/cards", data={"uid": "04A23B1C"}, headers=SAME_ORIGIN
        )
        assert r.status_code == 403, role
        r = c.post(
            f"/people/{world.ids['alice']}/cards/{world.ids['card_key']}/revoke",
            data={"reason": "lost"},
            headers=SAME_ORIGIN,
        )
        assert r.status_code == 403, role
        r = c.post(
            f"/people/{world.ids['alice']}/enrol-tap",
            data={"device": "gate-1"},
            headers=SAME_ORIGIN,
        )
        assert r.status_code == 403, role
    assert _counts(database_url) == before


def test_search_by_name_class_status_and_card_uid(
    client: TestClient, world: World, database_url: str
) -> None:
    c = _as(client, "school_admin")
    r = c.get("/people?q=ami")
    assert "Amir Amirov" in r.text and "Alice" not in r.text and "1 person found" in r.text
    r = c.get(f"/people?class={world.ids['class_id']}")
    assert "Alice Aliyeva" in r.text and "Amir" not in r.text
    r = c.get("/people?q=100%25")  # a LIKE wildcard is a character, not "anything"
    assert "0 people found" in r.text
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE people SET active = false WHERE id = %s", (world.ids["amir"],))
    assert "Amir" not in c.get("/people").text
    assert "Amir Amirov" in c.get("/people?status=inactive").text
    assert "Amir Amirov" in c.get("/people?status=all").text
    # a card typed as printed finds its holder: the key derived with the school's site key
    assert (
        c.post(
            f"/people/{world.ids['alice']}/cards",
            data={"uid": "04:a2:3b:1c"},
            headers=SAME_ORIGIN,
            follow_redirects=False,
        ).status_code
        == 303
    )
    r = c.get("/people?uid=04-A2-3B-1C")
    assert "Alice Aliyeva" in r.text and "1 person found" in r.text
    assert "0 people found" in c.get("/people?uid=04A23B1D").text
    r = c.get("/people?uid=xyz")
    assert "Not a card UID" in r.text and "Alice" not in r.text
    for bad in ("class=abc", "status=gone", "kind=robot", "offset=-1"):
        assert 'class="error"' in c.get(f"/people?{bad}").text, bad


def test_typed_card_is_added_and_audited(
    client: TestClient, world: World, database_url: str
) -> None:
    c = _as(client, "school_admin")
    alice = world.ids["alice"]
    r = c.post(
        f"/people/{alice}/cards",
        data={"uid": " 04:A2:3B:1C:5D:6E:7F "},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/people/{alice}?done=card_added"
    key = card_key(S1_KEY, bytes.fromhex("04A23B1C5D6E7F"))
    assert _one(database_url, "SELECT person_id FROM cards WHERE card_key = %s", (key,)) == alice
    assert (
        _one(
            database_url,
            "SELECT count(*) FROM audit_log WHERE entity = 'cards'"
            " AND action = 'create' AND entity_id = %s",
            (key,),
        )
        == 1
    )
    page = c.get(r.headers["location"]).text
    assert key in page and "The card was added." in page
    # the same card again: refused with the reason, nothing changed
    before = _counts(database_url)
    r = c.post(
        f"/people/{world.ids['amir']}/cards", data={"uid": "04A23B1C5D6E7F"}, headers=SAME_ORIGIN
    )
    assert r.status_code == 409 and "already registered" in r.text
    assert _counts(database_url) == before


@pytest.mark.parametrize("uid", ["", "12345", "04A23B1C5D", "zz:zz:zz:zz", "04A23B1C" * 3])
def test_a_bad_uid_is_refused_and_changes_nothing(
    client: TestClient, world: World, database_url: str, uid: str
) -> None:
    c = _as(client, "school_admin")
    before = _counts(database_url)
    r = c.post(f"/people/{world.ids['alice']}/cards", data={"uid": uid}, headers=SAME_ORIGIN)
    assert r.status_code == 422
    assert "Not a card UID: type 4, 7 or 10 bytes in hex" in r.text
    assert _counts(database_url) == before


def test_bad_uid_message_is_translated(client: TestClient, world: World) -> None:
    c = _as(client, "school_admin")
    c.post("/lang", data={"lang": "ru", "next": "/people"}, headers=SAME_ORIGIN)
    r = c.post(f"/people/{world.ids['alice']}/cards", data={"uid": "12"}, headers=SAME_ORIGIN)
    assert r.status_code == 422 and 'lang="ru"' in r.text
    assert "Not a card UID" not in r.text and "UID" in r.text


def test_revoking_a_card_is_audited(client: TestClient, world: World, database_url: str) -> None:
    c = _as(client, "school_admin")
    alice, key = world.ids["alice"], world.ids["card_key"]
    before = _counts(database_url)
    r = c.post(f"/people/{alice}/cards/{key}/revoke", data={"reason": ""}, headers=SAME_ORIGIN)
    assert r.status_code == 422 and "Say why the card is revoked." in r.text
    assert _counts(database_url) == before
    r = c.post(
        f"/people/{alice}/cards/{key}/revoke",
        data={"reason": "lost"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert (
        _one(database_url, "SELECT revoke_reason FROM cards WHERE card_key = %s", (key,)) == "lost"
    )
    assert (
        _one(
            database_url,
            "SELECT count(*) FROM audit_log WHERE entity = 'cards'"
            " AND action = 'revoke' AND entity_id = %s AND actor_id = %s",
            (key, world.users["school_admin"]),
        )
        == 1
    )
    page = c.get(f"/people/{alice}?done=card_revoked").text
    assert "The card was revoked." in page and "revoked" in page and "lost" in page
    before = _counts(database_url)
    r = c.post(f"/people/{alice}/cards/{key}/revoke", data={"reason": "lost"}, headers=SAME_ORIGIN)
    assert r.status_code == 409 and "already revoked" in r.text
    assert _counts(database_url) == before


def test_enrol_by_tap_finds_the_next_unknown_card_after_the_press(
    client: TestClient, world: World, database_url: str
) -> None:
    c = _as(client, "school_admin")
    amir = world.ids["amir"]
    # a stranger tapped before the press, another later tap offline long ago: neither counts
    _tap(database_url, "gate-1", 500, "s1", "aaaaaaaaaaaaaaaa")
    r = c.post(f"/people/{amir}/enrol-tap", data={"device": "gate-1"}, headers=HX)
    assert r.status_code == 200 and 'id="enrol-tap"' in r.text
    assert 'hx-trigger="every 1s"' in r.text and 'id="countdown"' in r.text
    assert "<html" not in r.text  # htmx gets the part only
    eid = _one(database_url, "SELECT max(id) FROM card_enrolments")
    poll = f"/people/{amir}/enrol-tap/{eid}"
    assert 'id="countdown"' in c.get(poll, headers=HX).text
    _tap(database_url, "gate-1", 501, "s1", "bbbbbbbbbbbbbbbb", seconds_ago=3600)  # old backlog
    _tap(database_url, "gate-1", 502, "s1", CARD_BOB, person=world.ids["bob"], reason="ok")
    _tap(database_url, "gate-2", 1, "s2", "cccccccccccccccc")  # another reader
    assert 'id="countdown"' in c.get(poll, headers=HX).text
    _tap(database_url, "gate-1", 503, "s1", "dddddddddddddddd")
    _tap(database_url, "gate-1", 504, "s1", "eeeeeeeeeeeeeeee")
    r = c.get(poll, headers=HX)
    assert "dddddddddddddddd" in r.text and "hx-trigger" not in r.text
    assert "Add this card" in r.text
    r = c.post(f"{poll}/confirm", headers=SAME_ORIGIN, follow_redirects=False)
    assert r.status_code == 303
    assert (
        _one(database_url, "SELECT person_id FROM cards WHERE card_key = %s", ("dddddddddddddddd",))
        == amir
    )
    assert (
        _one(
            database_url,
            "SELECT count(*) FROM audit_log WHERE entity = 'cards'"
            " AND action = 'create' AND entity_id = 'dddddddddddddddd'",
        )
        == 1
    )
    # confirming twice adds nothing
    before = _counts(database_url)
    assert c.post(f"{poll}/confirm", headers=SAME_ORIGIN).status_code == 409
    assert _counts(database_url) == before


def test_enrol_by_tap_refuses_a_registered_card_and_expires(
    client: TestClient, world: World, database_url: str
) -> None:
    c = _as(client, "school_admin")
    amir, alice = world.ids["amir"], world.ids["alice"]
    # a revoked card is unknown to the readers (it left their list), but registered
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE cards SET revoked_at = now(), revoke_reason = 'lost' WHERE card_key = %s",
            (world.ids["card_key"],),
        )
    c.post(f"/people/{amir}/enrol-tap", data={"device": "gate-1"}, headers=HX)
    eid = _one(database_url, "SELECT max(id) FROM card_enrolments")
    _tap(database_url, "gate-1", 600, "s1", world.ids["card_key"])
    r = c.get(f"/people/{amir}/enrol-tap/{eid}", headers=HX)
    assert "already registered to Alice Aliyeva" in r.text and "Add this card" not in r.text
    before = _counts(database_url)
    r = c.post(f"/people/{amir}/enrol-tap/{eid}/confirm", headers=SAME_ORIGIN)
    assert r.status_code == 409 and "already registered" in r.text
    assert _counts(database_url) == before
    # a wait that saw nothing for its minute ends
    c.post(f"/people/{amir}/enrol-tap", data={"device": "gate-1"}, headers=HX)
    eid = _one(database_url, "SELECT max(id) FROM card_enrolments")
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE card_enrolments SET started_at = now() - interval '2 minutes',"
            " expires_at = now() - interval '1 minute' WHERE id = %s",
            (eid,),
        )
    r = c.get(f"/people/{amir}/enrol-tap/{eid}", headers=HX)
    assert "within a minute" in r.text and "hx-trigger" not in r.text
    # a wait belongs to its person; a reader of another school is refused
    assert c.get(f"/people/{alice}/enrol-tap/{eid}", headers=HX).status_code == 404
    before = _counts(database_url)
    r = c.post(f"/people/{amir}/enrol-tap", data={"device": "gate-2"}, headers=SAME_ORIGIN)
    assert r.status_code == 422 and "Pick a reader of the school." in r.text
    assert _counts(database_url) == before


def test_person_page_parts(client: TestClient, world: World, database_url: str) -> None:
    alice = world.ids["alice"]
    with psycopg.connect(database_url) as conn:
        day = conn.execute("SELECT (now() AT TIME ZONE 'Asia/Almaty')::date").fetchone()
        assert day is not None
        # today: Alice late (09:10 after day_start 08:30); Amir makes it a school day
        conn.execute(
            "INSERT INTO attendance (person_id, day, school_id, first_in, passages) VALUES"
            " (%s, %s, 's1', (%s + time '09:10') AT TIME ZONE 'Asia/Almaty', 1),"
            " (%s, %s, 's1', (%s + time '08:00') AT TIME ZONE 'Asia/Almaty', 1)",
            (alice, day[0], day[0], world.ids["amir"], day[0], day[0]),
        )
        conn.execute(
            "INSERT INTO allergen_restrictions (person_id, allergen_mask, allergens,"
            " note) VALUES (%s, 64, '{milk}', 'no dairy')",
            (alice,),
        )
    c = _as(client, "school_admin")
    r = c.get(f"/people/{alice}")
    assert "Days present: 1, of them late: 1; absent: 0." in r.text
    assert "milk" in r.text and "no dairy" in r.text
    assert "mum@qadam.kz" in r.text and "Make a letter" in r.text  # guardian, invitable
    assert "face" in r.text  # api_world's consent
    r = c.get(f"/people/{world.ids['amir']}")
    assert "Days present: 1, of them late: 0; absent: 0." in r.text
    r = c.get(f"/people/{alice}?month=2025-10")
    assert "Days present: 0" in r.text and "Next month" in r.text


@pytest.mark.parametrize("role", ["platform_admin", "district_authority", "school_admin"])
def test_the_list_is_what_the_api_returns(client: TestClient, world: World, role: str) -> None:
    """The same person's API call (a bearer token) and page list the same people of s1."""
    token = client.post(
        "/api/v1/auth/token", data={"username": EMAILS[role], "password": PASSWORD}
    ).json()["access_token"]
    api = client.get(
        "/api/v1/people?school=s1", headers={"Authorization": f"Bearer {token}"}
    ).json()
    page = _as(client, role).get("/people?school=s1&status=all").text
    names = [p["full_name"] for p in api["items"]]
    assert names and f"{api['total']} people found" in page
    for name in names:
        assert name in page
    for other in ("Bob Bekov", "Cara Caspian"):
        assert other not in page
