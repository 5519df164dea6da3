"""The school's side of the parents' restrictions and ratings, in-process (D28-G): the console's
restrictions to confirm (a guardian's removal waits; the school confirms or declines the list it
saw; another school's admin, other roles and cross-site posts change nothing) and the weekly
ratings table."""

from __future__ import annotations

from typing import Any

from api_world import PASSWORD, World
from appmenu_helpers import MILK, restriction_row, seed_menu
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient


def _as_guardian(client: TestClient, alice: int, allergens: list[str]) -> None:
    r = client.post("/app/en/login", data={"email": "mum@qadam.kz", "password": PASSWORD},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    r = client.post("/app/en/restrictions",
                    data={"child": alice, "allergen": allergens, "note": "since May"},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    client.cookies.clear()


def _post(client: TestClient, url: str, allergens: list[str], **headers: str) -> Any:
    return client.post(url, data={"allergen": allergens}, follow_redirects=False,
                       headers={**SAME_ORIGIN, **headers})  # fmt: skip


def test_the_school_confirms_or_declines_what_a_guardian_changed(
    client: TestClient, world: World, database_url: str
) -> None:
    alice = world.ids["alice"]
    _as_guardian(client, alice, ["milk"])
    _as_guardian(client, alice, [])  # milk removed: waits for the school
    assert restriction_row(database_url, alice) == (MILK, MILK, 0, False)

    sign_in(client, "tech1@qadam.kz", PASSWORD)
    assert client.get("/restrictions").status_code == 403
    assert _post(client, f"/restrictions/{alice}/confirm", []).status_code == 403
    client.cookies.clear()
    sign_in(client, "admin3@qadam.kz", PASSWORD)  # another school's admin
    assert _post(client, f"/restrictions/{alice}/confirm", []).status_code == 404
    assert "Alice" not in client.get("/restrictions").text
    client.cookies.clear()
    assert restriction_row(database_url, alice) == (MILK, MILK, 0, False)

    sign_in(client, "admin1@qadam.kz", PASSWORD)
    page = client.get("/restrictions")
    assert page.status_code == 200 and "Alice Aliyeva" in page.text
    assert "The guardian asks to remove:" in page.text and "milk" in page.text
    assert "<q>since May</q>" in page.text  # the guardian's note, escaped as text
    assert 'href="/restrictions"' in page.text  # its menu entry
    # a stale list (the one before the guardian's change), an unknown name, a cross-site post
    r = _post(client, f"/restrictions/{alice}/confirm", ["milk"])
    assert r.status_code == 409 and "changed the restrictions meanwhile" in r.text
    assert _post(client, f"/restrictions/{alice}/confirm", ["gold"]).status_code == 409
    r = _post(client, f"/restrictions/{alice}/confirm", [], **{"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert restriction_row(database_url, alice) == (MILK, MILK, 0, False)
    r = _post(client, f"/restrictions/{alice}/decline", [])
    assert r.status_code == 303
    assert restriction_row(database_url, alice) == (MILK, MILK, None, True)
    page = client.get("/restrictions?school=s1&done=declined", headers={"Accept-Language": "ru"})
    assert "Ничего не ждёт подтверждения" in page.text

    client.cookies.clear()
    _as_guardian(client, alice, [])  # asked again; this time the school confirms
    sign_in(client, "admin1@qadam.kz", PASSWORD)
    r = _post(client, f"/restrictions/{alice}/confirm", [])
    assert r.status_code == 303
    assert restriction_row(database_url, alice) == (0, 0, None, True)


def test_the_weekly_ratings_table(client: TestClient, world: World, database_url: str) -> None:
    alice = world.ids["alice"]
    seed = seed_menu(database_url, alice)
    r = client.post("/app/en/login", data={"email": "mum@qadam.kz", "password": PASSWORD},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    r = client.post("/app/en/rate", data={"child": alice, "dish": seed["porridge"],
                    "day": str(seed["today"]), "score": "2", "comment": "cold"},
                    headers=SAME_ORIGIN, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    client.cookies.clear()
    sign_in(client, "tech1@qadam.kz", PASSWORD)
    assert client.get("/ratings").status_code == 403
    client.cookies.clear()
    sign_in(client, "cook1@qadam.kz", PASSWORD)
    page = client.get("/ratings", headers={"Accept-Language": "ru"})
    assert page.status_code == 200 and "Молочная каша" in page.text and "2,00" in page.text
    assert (
        "Молочная каша"
        not in client.get(
            f"/ratings?week={seed['next_monday']}", headers={"Accept-Language": "ru"}
        ).text
    )
    assert client.get("/ratings?school=s3").status_code == 404
