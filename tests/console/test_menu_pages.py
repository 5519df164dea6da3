"""The console's menu planner and dish catalogue in-process (D28-D): who may open and write them
(the API's MenuPlanner and SchoolAdmin), another school is "not found" and unchanged, a dish
with a photo (decoded, upright, without EXIF, 800 px and 200 px, served by hash with long
caching), bad photos refused with nothing kept, a planned day equal to what
``GET /api/v1/schools/{id}/menu`` answers and pushed to the canteen board, copies, and the
refusals of bad days. The same flows in Chromium: test_menu_browser.py."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient
from menu_helpers import gif, next_monday, phone_jpeg, png
from PIL import Image

from cloud.commands import menu as board_menus
from cloud.domain import registry

EMAILS = {
    "platform_admin": "root@qadam.kz",
    "district_authority": "d1@qadam.kz",
    "school_admin": "admin1@qadam.kz",
    "canteen_operator": "cook1@qadam.kz",
    "technician": "tech1@qadam.kz",
}


@pytest.fixture
def menu_world(database_url: str, world: World) -> Iterator[dict[str, Any]]:
    """api_world plus a canteen board in s1, a second and a retired dish of s1."""
    with psycopg.connect(database_url) as conn:
        registry.register_device(conn, "ct-1", "s1", "canteen", "canteen", "canteen")

        def dish(name: str, price: str, allergens: list[str], mask: int, active: bool) -> int:
            row = conn.execute(
                "INSERT INTO dishes (school_id, name_kk, name_ru, name_en, price, allergens,"
                " allergen_mask, active) VALUES ('s1', %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (name + " kk", name + " ru", name, price, allergens, mask, active),
            ).fetchone()
            assert row is not None
            return int(row[0])

        ids = {"plov": world.ids["dish_id"], "salad": dish("Salad", "120.50", ["milk"], 64, True),
               "old": dish("Old soup", "90", [], 0, False),
               "theirs": world.ids["other_dish_id"]}  # fmt: skip
        today = board_menus.school_today(conn, "s1")
    yield {"ids": ids, "today": today, "url": database_url}


def _rows(url: str, q: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(q, params).fetchall()


def _token(url: str, email: str) -> dict[str, str]:
    """A bearer token of the same person, for the API call the page must agree with."""
    from auth_tokens import session_headers

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT id FROM users WHERE email = %s", (email,)).fetchone()
        assert row is not None
    return session_headers(url, int(row[0]))


def _post(client: TestClient, path: str, **kw: Any) -> Any:
    return client.post(path, headers=SAME_ORIGIN, follow_redirects=False, **kw)


@pytest.mark.parametrize("role", list(EMAILS))
def test_the_menu_pages_follow_the_apis_roles(
    client: TestClient, world: World, menu_world: dict[str, Any], role: str
) -> None:
    assert sign_in(client, EMAILS[role], PASSWORD).status_code == 303
    planner = role in ("platform_admin", "school_admin", "canteen_operator")  # MenuPlanner
    writer = role in ("platform_admin", "school_admin")  # SchoolAdmin
    plov = menu_world["ids"]["plov"]
    for path in ("/menu?school=s1", "/menu/dishes?school=s1",
                 f"/menu/day/{menu_world['today']}?school=s1"):  # fmt: skip
        assert client.get(path).status_code == (200 if planner else 403), path
    assert client.get(f"/menu/dishes/{plov}").status_code == (200 if writer else 403)
    # the menu entry only for those who may plan (a technician's pages have no menu bar)
    home = client.get("/menu/dishes?school=s1" if planner else "/today").text
    assert ('<li><a href="/menu"' in home) == planner or role == "technician"
    if planner:
        page = client.get("/menu/dishes?school=s1").text
        assert ("Add a dish" in page) == writer
    r = _post(client, "/menu/dishes", data={"school": "s1", "name_kk": "Қуырдақ",
                                            "name_ru": "Куырдак", "price": "400"})  # fmt: skip
    assert r.status_code == (303 if writer else 403)
    names = {r[0] for r in _rows(menu_world["url"], "SELECT name_ru FROM dishes")}
    assert ("Куырдак" in names) == writer


def test_another_schools_menu_and_dishes_are_not_found_and_unchanged(
    client: TestClient, menu_world: dict[str, Any]
) -> None:
    url, ids = menu_world["url"], menu_world["ids"]
    day = next_monday(menu_world["today"])
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303  # of s1
    for path in ("/menu?school=s2", "/menu/dishes?school=s2", f"/menu/day/{day}?school=s2",
                 f"/menu/dishes/{ids['theirs']}", "/menu?school=nope"):  # fmt: skip
        r = client.get(path)
        assert r.status_code == 404 and "Not found" in r.text, path
    before = _rows(url, "SELECT * FROM dishes ORDER BY id")
    other = f"lunch:{ids['theirs']}"
    for path, data in (
        (f"/menu/day/{day}", {"school": "s2", "dish": other}),
        ("/menu/copy", {"school": "s2", "from": day.isoformat(), "days": "7",
                        "to": (day + timedelta(days=7)).isoformat()}),
        (f"/menu/dishes/{ids['theirs']}", {"name_kk": "x", "name_ru": "x", "price": "1"}),
        ("/menu/dishes", {"school": "s2", "name_kk": "x", "name_ru": "x", "price": "1"}),
    ):  # fmt: skip
        assert _post(client, path, data=data).status_code == 404, path
    # school A's own day naming school B's dish is refused too, and nothing is stored
    r = _post(client, f"/menu/day/{day}", data={"school": "s1", "dish": other})
    assert r.status_code == 422 and "not on this school" in r.text
    assert _rows(url, "SELECT * FROM menus") == []
    assert _rows(url, "SELECT * FROM dishes ORDER BY id") == before


def test_a_dish_with_a_photo_is_kept_upright_without_exif(
    client: TestClient, menu_world: dict[str, Any]
) -> None:
    url = menu_world["url"]
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    r = _post(client, "/menu/dishes",
              data={"school": "s1", "name_kk": "Бешбармақ", "name_ru": "Бешбармак",
                    "name_en": "Beshbarmak", "price": "1 250,50", "allergen": ["gluten", "eggs"]},
              files={"photo": ("IMG_0001.jpg", phone_jpeg(), "image/jpeg")})  # fmt: skip
    assert r.status_code == 303, r.text
    (dish_id, photo_url, price, allergens, mask), = _rows(
        url, "SELECT id, photo_url, price, allergens, allergen_mask FROM dishes"
        " WHERE name_ru = 'Бешбармак'")  # fmt: skip
    assert re.fullmatch(r"/media/dishes/[0-9a-f]{32}\.jpg", photo_url)
    assert str(price) == "1250.50" and allergens == ["eggs", "gluten"] and mask == 0b101
    # the API says the same
    api = client.get(f"/api/v1/dishes/{dish_id}", headers=_token(url, "admin1@qadam.kz")).json()
    assert api["photo_url"] == photo_url and api["allergens"] == ["eggs", "gluten"]
    full = client.get(photo_url)
    assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
    assert "immutable" in full.headers["cache-control"] and "max-age=31536000" in full.headers[
        "cache-control"]  # fmt: skip
    img = Image.open(io.BytesIO(full.content))
    assert img.format == "JPEG" and img.size == (400, 800)  # turned upright, 800 px at most
    assert dict(img.getexif()) == {} and b"PhoneMaker" not in full.content
    assert b"Exif" not in full.content
    thumb = client.get(photo_url.replace(".jpg", "-200.jpg"))
    assert Image.open(io.BytesIO(thumb.content)).size == (100, 200)
    # the hash names the content: a revalidation is 304
    again = client.get(photo_url, headers={"If-None-Match": full.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/media/dishes/" + "0" * 32 + ".jpg").status_code == 404
    # the list shows the thumbnail, the price per locale and the allergens
    page = client.get("/menu/dishes?school=s1").text
    assert photo_url.replace(".jpg", "-200.jpg") in page and "1,250.50" in page
    assert "gluten, eggs" in page or "eggs, gluten" in page


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("plov.jpg", b"this is not a photo at all", "The file is not a photo"),
        ("plov.gif", gif(), "The file is not a photo"),
        ("plov.jpg", phone_jpeg()[:3000], "The photo is damaged"),
        ("plov.png", png()[:-40], "The photo is damaged"),
        ("huge.png", b"\x89PNG" + b"\0" * (8 * 1024 * 1024), "larger than 8 MB"),
        ("empty.jpg", b"", "The photo file is empty"),
    ],
)
def test_a_bad_photo_is_refused_and_nothing_is_kept(
    client: TestClient, menu_world: dict[str, Any], name: str, data: bytes, message: str
) -> None:
    url, plov = menu_world["url"], menu_world["ids"]["plov"]
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    dishes_before = _rows(url, "SELECT * FROM dishes ORDER BY id")
    audit_before = _rows(url, "SELECT count(*) FROM audit_log")
    r = _post(client, "/menu/dishes", data={"school": "s1", "name_kk": "Жаңа", "name_ru": "Новое",
                                            "price": "100"},
              files={"photo": (name, data, "image/jpeg")})  # fmt: skip
    assert r.status_code == 422 and message in r.text, r.text[-400:]
    # a change of an existing dish with that photo: its name does not change either
    r = _post(client, f"/menu/dishes/{plov}", data={"name_kk": "Палау", "name_ru": "Плов 2",
                                                    "price": "350", "active": "on"},
              files={"photo": (name, data, "image/png")})  # fmt: skip
    assert r.status_code == 422 and message in r.text
    assert _rows(url, "SELECT * FROM dishes ORDER BY id") == dishes_before
    assert _rows(url, "SELECT count(*) FROM dish_photos") == [(0,)]
    assert _rows(url, "SELECT count(*) FROM audit_log") == audit_before


def test_a_bad_photo_is_refused_in_russian(client: TestClient, menu_world: dict[str, Any]) -> None:
    assert sign_in(client, "admin1@qadam.kz", PASSWORD, lang="ru").status_code == 303
    r = client.post("/menu/dishes", data={"school": "s1", "name_kk": "А", "name_ru": "Б",
                                          "price": "abc"},
                    files={"photo": ("x.jpg", b"GIF89a", "image/jpeg")},
                    headers={**SAME_ORIGIN, "Accept-Language": "ru"})  # fmt: skip
    assert r.status_code == 422
    assert "Файл не является фотографией" in r.text and "Укажите цену числом" in r.text


def test_a_planned_day_is_what_the_api_returns_and_reaches_the_board(
    client: TestClient, menu_world: dict[str, Any]
) -> None:
    url, ids = menu_world["url"], menu_world["ids"]
    day = next_monday(menu_world["today"])
    assert sign_in(client, "cook1@qadam.kz", PASSWORD).status_code == 303  # a canteen operator
    page = client.get(f"/menu/day/{day}?school=s1")
    assert page.status_code == 200 and "Old soup" not in page.text  # retired: not offered
    r = _post(
        client,
        f"/menu/day/{day}",
        data={
            "school": "s1",
            "dish": [
                f"lunch:{ids['plov']}",
                "",
                f"lunch:{ids['salad']}",
                f"breakfast:{ids['salad']}",
            ],
        },
    )
    assert r.status_code == 303, r.text[-500:]
    assert r.headers["location"] == f"/menu?school=s1&week={day.isoformat()}&done=saved"
    api = client.get(f"/api/v1/schools/s1/menu?from={day}&to={day}",
                     headers=_token(url, "cook1@qadam.kz")).json()  # fmt: skip
    assert len(api) == 1 and api[0]["date"] == day.isoformat()
    lunch = api[0]["periods"]["lunch"]
    assert [d["id"] for d in lunch["dishes"]] == [ids["plov"], ids["salad"]]
    assert lunch["price"] == "470.50" and lunch["allergen_mask"] == 64
    assert [d["id"] for d in api[0]["periods"]["breakfast"]["dishes"]] == [ids["salad"]]
    # the week shows what the API returned
    week = client.get(r.headers["location"]).text
    assert "Menu" in week and "The day is saved" in week
    section = week[week.index(f'data-date="{day.isoformat()}"') :]
    section = section[: section.index("</section>")]
    assert "Плов" in section and "Salad" in section and "470.50" in section and "milk" in section
    # the canteen board got its menu (within menu_days_ahead), audited as the API's write
    cmds = _rows(url, "SELECT device_id, args FROM device_commands WHERE purpose = 'menu'")
    assert [c[0] for c in cmds] == ["ct-1"]
    assert cmds[0][1]["set"]["menu"]["days"][day.isoformat()]["lunch"][:3] == [
        ids["plov"], 64, "470.50"]  # fmt: skip
    assert _rows(url, "SELECT action FROM audit_log WHERE entity = 'menus'") == [("create",)]


@pytest.mark.parametrize(
    ("when", "dish", "message"),
    [
        (-1, "lunch:{plov}", "That day has passed"),
        (400, "lunch:{plov}", "more than a year ahead"),
        (3, "lunch:{old}", "not on this school"),
        (3, "lunch:abc", "Pick dishes from the list"),
        (3, "Lunch Time:{plov}", "Pick dishes from the list"),
    ],
)
def test_a_bad_day_is_refused_and_changes_nothing(
    client: TestClient, menu_world: dict[str, Any], when: int, dish: str, message: str
) -> None:
    url, ids = menu_world["url"], menu_world["ids"]
    day = menu_world["today"] + timedelta(days=when)
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    r = _post(client, f"/menu/day/{day}", data={"school": "s1", "dish": dish.format(**ids)})
    assert r.status_code == 422 and message in r.text, r.text[-600:]
    assert _rows(url, "SELECT * FROM menus") == []
    assert _rows(url, "SELECT * FROM device_commands") == []
    assert client.get("/menu/day/not-a-date?school=s1").status_code == 404
    assert client.get("/menu/day/9999-12-31?school=s1").status_code == 404
    assert client.get("/menu?school=s1&week=9999-12-31").status_code == 200  # this week instead
    r = _post(client, "/menu/copy", data={"school": "s1", "from": day.isoformat(), "days": "7",
                                          "to": "9999-12-31"})  # fmt: skip
    assert r.status_code == 422 and "Choose the day to copy to" in r.text


def test_a_day_and_a_week_are_copied_forward(
    client: TestClient, menu_world: dict[str, Any]
) -> None:
    url, ids = menu_world["url"], menu_world["ids"]
    monday = next_monday(menu_world["today"])
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    sets = {"school": "s1", "dish": [f"lunch:{ids['plov']}", f"lunch:{ids['salad']}"]}
    assert _post(client, f"/menu/day/{monday}", data=sets).status_code == 303
    tuesday, next_week = monday + timedelta(days=1), monday + timedelta(days=7)
    r = _post(client, "/menu/copy", data={"school": "s1", "from": monday.isoformat(), "days": "1",
                                          "to": tuesday.isoformat()})  # fmt: skip
    assert r.status_code == 303 and r.headers["location"].endswith("done=copied")
    r = _post(client, "/menu/copy", data={"school": "s1", "from": monday.isoformat(), "days": "7",
                                          "to": next_week.isoformat()})  # fmt: skip
    assert r.status_code == 303
    got = _rows(url, "SELECT day, period, dish_ids FROM menus ORDER BY day")
    want = [ids["plov"], ids["salad"]]
    assert got == [(d, "lunch", want) for d in (monday, tuesday, next_week,
                                               next_week + timedelta(days=1))]  # fmt: skip
    # into the past: refused, nothing written
    yesterday = (menu_world["today"] - timedelta(days=1)).isoformat()
    r = _post(client, "/menu/copy", data={"school": "s1", "from": monday.isoformat(), "days": "7",
                                          "to": yesterday})  # fmt: skip
    assert r.status_code == 422 and "That day has passed" in r.text
    assert len(_rows(url, "SELECT * FROM menus")) == 4


def test_changing_a_planned_dish_goes_through_the_api_rules_and_to_the_board(
    client: TestClient, menu_world: dict[str, Any]
) -> None:
    url, ids = menu_world["url"], menu_world["ids"]
    day = menu_world["today"] + timedelta(days=1)
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    assert (
        _post(
            client, f"/menu/day/{day}", data={"school": "s1", "dish": f"lunch:{ids['salad']}"}
        ).status_code
        == 303
    )
    r = _post(client, f"/menu/dishes/{ids['salad']}",
              data={"name_kk": "Салат kk", "name_ru": "Салат", "name_en": "Salad", "price": "130",
                    "allergen": ["milk", "nuts"], "active": "on"},
              files={"photo": ("s.png", png(1600, 900), "image/png")})  # fmt: skip
    assert r.status_code == 303, r.text[-400:]
    dish = client.get(f"/api/v1/dishes/{ids['salad']}", headers=_token(url, "admin1@qadam.kz"))
    body = dish.json()
    assert body["price"] == "130.00" and body["allergens"] == ["milk", "nuts"]
    assert body["photo_url"].startswith("/media/dishes/")
    # the board's newest menu carries the new mask and price
    newest = _rows(url, "SELECT args FROM device_commands WHERE purpose = 'menu' AND state ="
                        " 'queued' ORDER BY id DESC LIMIT 1")[0][0]  # fmt: skip
    assert newest["set"]["menu"]["days"][day.isoformat()]["lunch"][1:3] == [64 | 128, "130"]
    # a bad price is the API model's refusal, translated, and changes nothing
    r = _post(
        client,
        f"/menu/dishes/{ids['salad']}",
        data={"name_kk": "Салат kk", "name_ru": "", "price": "-5", "active": "on"},
    )
    assert r.status_code == 422 and "in Russian" in r.text and "Enter the price" in r.text
    assert (
        client.get(f"/api/v1/dishes/{ids['salad']}", headers=_token(url, "admin1@qadam.kz")).json()[
            "name_ru"
        ]
        == "Салат"
    )


def test_the_week_in_kazakh_names_the_dishes_and_allergens_in_kazakh(
    client: TestClient, menu_world: dict[str, Any]
) -> None:
    ids = menu_world["ids"]
    day = menu_world["today"] + timedelta(days=1)
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    assert (
        _post(
            client,
            f"/menu/day/{day}",
            data={"school": "s1", "dish": [f"lunch:{ids['plov']}", f"lunch:{ids['salad']}"]},
        ).status_code
        == 303
    )
    assert _post(client, "/lang", data={"lang": "kk", "next": "/menu"}).status_code == 303
    week = client.get(f"/menu?school=s1&week={day}").text
    assert 'lang="kk"' in week and "Палау" in week and "Salad kk" in week
    assert "сүт" in week.lower()  # milk
    assert "470,50" in week  # the kk_KZ decimal comma


def test_a_past_week_has_no_plan_buttons(client: TestClient, menu_world: dict[str, Any]) -> None:
    assert sign_in(client, "admin1@qadam.kz", PASSWORD).status_code == 303
    past = menu_world["today"] - timedelta(days=14)
    week = client.get(f"/menu?school=s1&week={past}").text
    assert "/menu/day/" not in week and "Nothing planned." in week
    this = client.get("/menu?school=s1").text
    assert f"/menu/day/{menu_world['today']}" in this
    assert date.fromisoformat(re.findall(r'data-date="([0-9-]+)"', this)[0]).weekday() == 0
