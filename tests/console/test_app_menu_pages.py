"""The parents' app's menu, ratings and allergen restrictions, in-process (D28-G): the menu of
the child's school with the child's blocked set, in the page's language; only the guardian's
own children (404 for others, nothing stored); a rating for a dish the child was not served is
refused and nothing stored, a served one stored once; a restriction added in the app is in
force at once and in the next compiled whitelist, a removal waits for the school's
confirmation (API), and the school's weekly averages."""

from __future__ import annotations

from typing import Any

import psycopg
from api_world import PASSWORD, World, login
from appmenu_helpers import MILK, ratings, restriction_row, seed_menu
from console_helpers import SAME_ORIGIN
from fastapi.testclient import TestClient

from cloud.domain.whitelist import RECORD, _records
from cloud.provisioning.whitelists import compile_school


def _guardian(client: TestClient) -> None:
    r = client.post("/app/en/login", data={"email": "mum@qadam.kz", "password": PASSWORD},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text


def _bearer(client: TestClient, email: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {login(client, email)}"}


def _rate(client: TestClient, child: int, dish: int, day: Any, score: str = "4",
          comment: str = "", lang: str = "en") -> Any:  # fmt: skip
    return client.post(f"/app/{lang}/rate", data={"child": child, "dish": dish, "day": str(day),
                       "score": score, "comment": comment}, headers=SAME_ORIGIN,
                       follow_redirects=False)  # fmt: skip


def _set(client: TestClient, child: int, allergens: list[str], lang: str = "en") -> Any:
    return client.post(f"/app/{lang}/restrictions",
                       data={"child": child, "allergen": allergens, "note": ""},
                       headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip


def test_the_menu_marks_the_childs_blocked_set_in_the_language(
    client: TestClient, world: World, database_url: str
) -> None:
    alice = world.ids["alice"]
    seed = seed_menu(database_url, alice)
    assert client.get("/app/en/menu", follow_redirects=False).headers["location"] == "/app/en/login"
    _guardian(client)
    page = client.get("/app/en/menu")
    assert page.status_code == 200
    for text in ("Milk porridge", "Tea", "Plov", "Nut salad", "This week", "Next week", "650 ₸"):
        assert text in page.text, text
    assert "blocked" not in page.text.replace("\"Blocked\"", "")  # no restriction yet
    assert 'aria-current="page">Menu<' in page.text  # its tab
    r = _set(client, alice, ["milk"])
    assert r.status_code == 303
    page = client.get(f"/app/en/menu?child={alice}").text
    # the breakfast set (porridge + tea) is refused at the counter; lunch is not
    breakfast = page.split(f'id="day-{seed["today"].isoformat()}"')[1].split("</article>")[0]
    assert breakfast.count('class="menu-set blocked"') == 1
    assert 'class="dish blocked"' in breakfast and "milk" in breakfast
    lunch = breakfast.split("Lunch")[1]
    assert "blocked" not in lunch
    ru = client.get(f"/app/ru/menu?child={alice}").text
    assert "Молочная каша" in ru and "Заблокировано" in ru and "молоко" in ru
    kk = client.get(f"/app/kk/menu?child={alice}").text
    assert "Сүт ботқасы" in kk and "Палау" in kk
    # served today: porridge and tea of the breakfast set can be rated; plov cannot
    assert f"dish={seed['porridge']}&amp;day={seed['today']}" in page
    assert f"dish={seed['tea']}&amp;day={seed['today']}" in page
    assert f"dish={seed['plov']}&amp;" not in page


def test_other_children_are_not_found_and_nothing_is_stored(
    client: TestClient, world: World, database_url: str
) -> None:
    seed = seed_menu(database_url, world.ids["alice"])
    _guardian(client)
    before = [restriction_row(database_url, world.ids[k]) for k in ("amir", "bob", "cara")]
    for other in (world.ids["amir"], world.ids["bob"], world.ids["cara"], 10**9):
        for url in (
            f"/app/en/menu?child={other}",
            f"/app/en/restrictions?child={other}",
            f"/app/en/rate?child={other}&dish={seed['porridge']}&day={seed['today']}",
        ):
            r = client.get(url)
            assert r.status_code == 404 and "Amir" not in r.text, url
        assert _set(client, other, ["milk"]).status_code == 404
        assert _rate(client, other, seed["porridge"], seed["today"]).status_code == 404
    assert [restriction_row(database_url, world.ids[k]) for k in ("amir", "bob", "cara")] == before
    assert ratings(database_url) == []
    # the API answers the same
    mum = _bearer(client, "mum@qadam.kz")
    r = client.put(f"/api/v1/people/{world.ids['amir']}/restrictions", headers=mum,
                   json={"allergens": ["milk"]})  # fmt: skip
    assert r.status_code == 404


def test_a_dish_not_served_is_refused_and_a_served_one_rated_once(
    client: TestClient, world: World, database_url: str
) -> None:
    alice = world.ids["alice"]
    seed = seed_menu(database_url, alice)
    today = seed["today"]
    _guardian(client)
    # plov was on today's menu but Alice had the breakfast only
    form = client.get(f"/app/en/rate?child={alice}&dish={seed['plov']}&day={today}")
    assert form.status_code == 200 and "was not served to your child" in form.text
    assert 'name="score"' not in form.text
    r = _rate(client, alice, seed["plov"], today, "5", "nice")
    assert r.status_code == 422 and "was not served to your child" in r.text
    r = _rate(client, alice, seed["porridge"], seed["next_monday"], "5", lang="ru")
    assert r.status_code == 422 and "ещё не наступил" in r.text
    assert _rate(client, alice, seed["porridge"], today, "9").status_code == 422
    assert ratings(database_url) == []
    mum = _bearer(client, "mum@qadam.kz")
    r = client.post("/api/v1/ratings", headers=mum, json={"person_id": alice,
                    "dish_id": seed["plov"], "served_on": str(today), "score": 3})  # fmt: skip
    assert r.status_code == 422 and "not served" in r.text
    assert ratings(database_url) == []

    r = _rate(client, alice, seed["porridge"], today, "4", "warm")
    assert r.status_code == 303 and r.headers["location"].startswith(
        f"/app/en/menu?child={alice}&rated=1"
    )
    assert "Thank you" in client.get(r.headers["location"]).text
    # the other dish of the same set was served too
    assert _rate(client, alice, seed["tea"], today, "2").status_code == 303
    again = _rate(client, alice, seed["porridge"], today, "1")
    assert again.status_code == 422 and "already rated" in again.text
    r = client.post("/api/v1/ratings", headers=mum, json={"person_id": alice,
                    "dish_id": seed["porridge"], "served_on": str(today), "score": 1})  # fmt: skip
    assert r.status_code == 409
    assert ratings(database_url) == [
        (alice, seed["porridge"], today, 4, "warm"),
        (alice, seed["tea"], today, 2, ""),
    ]
    assert "Your rating: 4/5" in client.get(f"/app/en/menu?child={alice}").text
    # the feed's meal links to that day on the menu, where it is rated
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
            " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at) VALUES"
            " ('cant-1', 1, 1, 's1', %s, %s, 'tap', 'canteen', 'granted', 'free', now(), true,"
            " 1000, now())",
            (alice, world.ids["card_key"]),
        )
    feed = client.get(f"/app/en/?child={alice}").text
    assert f'href="/app/en/menu?child={alice}#day-{today.isoformat()}">Rate</a>' in feed

    # the school's averages per dish and week
    admin = _bearer(client, "admin1@qadam.kz")
    week = f"{today.isocalendar()[0]}-W{today.isocalendar()[1]:02d}"
    r = client.get(f"/api/v1/schools/s1/ratings?week={week}", headers=admin)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["week"] == week and got["first_day"] <= str(today)
    assert [(d["dish_id"], d["ratings"], d["average"], d["comments"]) for d in got["dishes"]] == [
        (seed["tea"], 1, "2.00", 0),
        (seed["porridge"], 1, "4.00", 1),
    ]
    assert client.get("/api/v1/schools/s1/ratings", headers=admin).json()["week"] == week
    assert client.get("/api/v1/schools/s1/ratings?week=2026-W60", headers=admin).status_code == 422
    assert client.get("/api/v1/schools/s1/ratings?week=soon", headers=admin).status_code == 422
    other = _bearer(client, "admin3@qadam.kz")
    assert client.get("/api/v1/schools/s1/ratings", headers=other).status_code == 404
    assert client.get("/api/v1/schools/s1/ratings", headers=mum).status_code == 403


def _whitelist_mask(database_url: str, card_key: str) -> int:
    with psycopg.connect(database_url) as conn:
        dirty = conn.execute("SELECT school_id FROM whitelist_dirty").fetchall()
        stored = compile_school(conn, "s1", 5)
    assert ("s1",) in dirty and stored is not None
    _version, records = _records(stored.data)
    _key, _attrs, _profile, mask = RECORD.unpack(records[bytes.fromhex(card_key)])
    return int(mask)


def test_a_restriction_added_is_in_force_at_once_a_removal_waits_for_the_school(
    client: TestClient, world: World, database_url: str
) -> None:
    alice = world.ids["alice"]
    _guardian(client)
    page = client.get(f"/app/en/restrictions?child={alice}")
    assert page.status_code == 200 and "No restrictions" in page.text
    r = _set(client, alice, ["milk", "gold"])
    assert r.status_code == 422 and "Choose allergens from the list" in r.text
    assert restriction_row(database_url, alice) == (0, None, None, False)
    assert _set(client, alice, []).status_code == 303  # nothing asked: nothing stored
    assert restriction_row(database_url, alice) == (0, None, None, False)

    assert _set(client, alice, ["milk"]).status_code == 303
    assert restriction_row(database_url, alice) == (MILK, MILK, None, False)
    assert _whitelist_mask(database_url, world.ids["card_key"]) == MILK
    page = client.get(f"/app/en/restrictions?child={alice}&saved=1").text
    assert "refuses meals with: milk" in page and "has not confirmed it yet" in page

    admin = _bearer(client, "admin1@qadam.kz")
    url = f"/api/v1/people/{alice}/restrictions"
    got = client.get(url, headers=admin).json()
    assert (got["allergens"], got["state"]) == (["milk"], "unconfirmed")
    assert (
        client.post(url + "/decline", headers=admin, json={"allergens": ["milk"]}).status_code
        == 409
    )
    r = client.post(url + "/confirm", headers=admin, json={"allergens": ["milk"]})
    assert r.status_code == 200 and r.json()["state"] == "confirmed"
    assert "Confirmed by the school" in client.get(f"/app/en/restrictions?child={alice}").text

    # the guardian removes milk and adds eggs: eggs at once, milk still refused
    assert _set(client, alice, ["eggs"]).status_code == 303
    eggs = 1 << 2
    assert restriction_row(database_url, alice) == (MILK | eggs, MILK | eggs, eggs, False)
    page = client.get(f"/app/en/restrictions?child={alice}").text
    assert "Waiting for the school" in page and "remove milk" in page
    ru = client.get(f"/app/ru/restrictions?child={alice}").text
    assert "Ждёт подтверждения школы" in ru
    # the school confirms what it saw; a stale list is refused and changes nothing
    got = client.get(url, headers=admin).json()
    assert (got["state"], got["requested_allergens"]) == ("removal_pending", ["eggs"])
    r = client.post(url + "/confirm", headers=admin, json={"allergens": ["milk"]})
    assert r.status_code == 409
    assert client.post(url + "/confirm", headers=_bearer(client, "admin3@qadam.kz"),
                       json={"allergens": ["eggs"]}).status_code == 404  # fmt: skip
    assert client.post(url + "/confirm", headers=_bearer(client, "mum@qadam.kz"),
                       json={"allergens": ["eggs"]}).status_code == 403  # fmt: skip
    assert restriction_row(database_url, alice) == (MILK | eggs, MILK | eggs, eggs, False)
    r = client.post(url + "/confirm", headers=admin, json={"allergens": ["eggs"]})
    assert r.status_code == 200 and r.json()["allergens"] == ["eggs"]
    assert restriction_row(database_url, alice) == (eggs, eggs, None, True)
    assert _whitelist_mask(database_url, world.ids["card_key"]) == eggs

    # a removal the school declines stays in force
    assert _set(client, alice, []).status_code == 303
    r = client.post(url + "/decline", headers=admin, json={"allergens": []})
    assert r.status_code == 200 and r.json()["allergens"] == ["eggs"]
    assert restriction_row(database_url, alice) == (eggs, eggs, None, True)
