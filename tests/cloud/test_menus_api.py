"""The dated menu through the API (D27-A): a day's sets per meal period, written by school admins
and canteen operators of the school, read by guardians too; bad bodies are 422s that change
nothing; a write within the push window queues each canteen board its menu (board format:
one set per period, masks OR'd, prices summed, the main dish's id), superseding one still
waiting; the set's price is what the cloud charges for a receipt of it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from api_world import World, build, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.commands import menu as menus
from cloud.domain import registry
from cloud.settings import Settings


@pytest.fixture
def world(database_url: str) -> Iterator[tuple[TestClient, World, str, dict[str, int]]]:
    w = build(database_url)
    with psycopg.connect(database_url) as conn:
        registry.register_device(conn, "ct-1", "s1", "canteen", "canteen", "canteen")
        registry.register_device(conn, "ct-2", "s1", "canteen", "canteen", "canteen")

        def dish(name: str, price: str, mask: int, school: str = "s1") -> int:
            row = conn.execute(
                "INSERT INTO dishes (school_id, name_kk, name_ru, name_en, price, allergen_mask)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                (school, name, name, name, price, mask),
            ).fetchone()
            assert row is not None
            return int(row[0])

        dishes = {"plov": dish("Plov", "650", 0), "salad": dish("Nut salad", "300.50", 4),
                  "tea": dish("Tea", "50", 0), "soup": dish("Soup", "200", 1, "s2")}  # fmt: skip
        conn.execute(
            "INSERT INTO meal_categories (school_id, kind, name, price)"
            " VALUES ('s1', 'reduced', 'Reduced', 325)"
        )
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        login_all(c, w, database_url)
        yield c, w, database_url, dishes


def _today(url: str) -> date:
    with psycopg.connect(url) as conn:
        return menus.school_today(conn, "s1")


def _commands(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT device_id, state, purpose, actor, args FROM device_commands ORDER BY id"
        ).fetchall()


def test_plan_a_day_and_the_boards_get_it(world: Any) -> None:
    c, w, url, d = world
    today = _today(url)
    tomorrow = (today + timedelta(days=1)).isoformat()
    body = {"periods": {"lunch": [d["plov"], d["salad"]], "breakfast": [d["tea"]]}}
    r = c.put(f"/api/v1/schools/s1/menu/{tomorrow}", headers=w.auth("canteen_operator"),
              json=body)  # fmt: skip
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out["pushed"]) == 2
    lunch = out["periods"]["lunch"]
    assert ([x["id"] for x in lunch["dishes"]], lunch["price"], lunch["allergen_mask"]) == (
        [d["plov"], d["salad"]], "950.50", 4)  # fmt: skip
    cmds = _commands(url)
    assert [(x[0], x[1], x[2], x[3]) for x in cmds] == [
        ("ct-1", "queued", "menu", "system"), ("ct-2", "queued", "menu", "system")]  # fmt: skip
    menu = cmds[0][4]["set"]["menu"]
    assert menu == {"reduced": "325", "days": {tomorrow: {
        "lunch": [d["plov"], 4, "950.50", "Plov +1"],
        "breakfast": [d["tea"], 0, "50", "Tea"]}}}  # fmt: skip
    # a change supersedes the menu still waiting; the same menu again queues nothing
    body = {"periods": {"lunch": [d["plov"]]}}
    r = c.put(f"/api/v1/schools/s1/menu/{tomorrow}", headers=w.auth("school_admin"), json=body)
    assert r.status_code == 200 and len(r.json()["pushed"]) == 2, r.text
    r = c.put(f"/api/v1/schools/s1/menu/{tomorrow}", headers=w.auth("school_admin"), json=body)
    assert r.status_code == 200 and r.json()["pushed"] == [], r.text
    assert [x[1] for x in _commands(url)] == ["superseded"] * 2 + ["queued"] * 2
    # far ahead: planned, not pushed (the boards hold today and the next days only)
    later = (today + timedelta(days=30)).isoformat()
    r = c.put(f"/api/v1/schools/s1/menu/{later}", headers=w.auth("school_admin"), json=body)
    assert r.status_code == 200 and r.json()["pushed"] == [], r.text
    # guardians read their children's school's menu
    r = c.get("/api/v1/schools/s1/menu", headers=w.auth("guardian"),
              params={"from": today.isoformat(), "to": later})  # fmt: skip
    assert r.status_code == 200, r.text
    assert [x["date"] for x in r.json()] == [tomorrow, later]
    with psycopg.connect(url) as conn:
        audit = conn.execute(
            "SELECT action, entity_id FROM audit_log WHERE entity = 'menus' ORDER BY id"
        ).fetchall()
    assert audit == [("create", f"s1/{tomorrow}"), ("update", f"s1/{tomorrow}"),
                     ("update", f"s1/{tomorrow}"), ("create", f"s1/{later}")]  # fmt: skip


@pytest.mark.parametrize(
    ("path_day", "body", "where"),
    [
        (-1, {"periods": {"lunch": ["plov"]}}, "date"),
        (400, {"periods": {"lunch": ["plov"]}}, "date"),
        (1, {"periods": {"lunch": []}}, "periods.lunch"),
        (1, {"periods": {"lunch": ["soup"]}}, "periods.lunch"),  # another school's dish
        (1, {"periods": {"lunch": [999999]}}, "periods.lunch"),
        (1, {"periods": {"lunch": ["plov", "plov"]}}, "periods.lunch"),
        (1, {"periods": {"Lunch time": ["plov"]}}, "periods"),
        (1, {"periods": {"lunch": ["1"]}}, "periods.lunch"),
        (1, {"lunch": ["plov"]}, "periods"),
        (None, {"periods": {"lunch": ["plov"]}}, "day"),
    ],
)  # fmt: skip
def test_bad_menus_are_422_and_change_nothing(
    world: Any, path_day: int | None, body: dict[str, Any], where: str
) -> None:
    c, w, url, d = world
    for ids in (body.get("periods") or {}).values():
        ids[:] = [d[i] if i in d else i for i in ids]
    day = "28.11.2026" if path_day is None else (_today(url) + timedelta(days=path_day))
    r = c.put(f"/api/v1/schools/s1/menu/{day}", headers=w.auth("school_admin"), json=body)
    assert r.status_code == 422, r.text
    locs = [".".join(str(x) for x in e["loc"][1:]) for e in r.json()["detail"]]
    assert any(loc.startswith(where) for loc in locs), (locs, r.text)
    with psycopg.connect(url) as conn:
        for table in ("menus", "device_commands"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert row is not None and row[0] == 0, table


def test_who_may_plan(world: Any) -> None:
    c, w, url, d = world
    day = (_today(url) + timedelta(days=1)).isoformat()
    body = {"periods": {"lunch": [d["plov"]]}}
    for role in ("guardian", "technician", "district_authority"):
        r = c.put(f"/api/v1/schools/s1/menu/{day}", headers=w.auth(role), json=body)
        assert r.status_code == 403, (role, r.text)
    # another school: not found for this school's admin
    r = c.put(f"/api/v1/schools/s3/menu/{day}", headers=w.auth("school_admin"), json=body)
    assert r.status_code == 404, r.text
    assert c.get("/api/v1/schools/s3/menu", headers=w.auth("guardian")).status_code == 404


def test_a_receipt_of_the_set_costs_the_set(world: Any) -> None:
    """One price source: the board charges the set's sum and reports its main dish; the cloud
    prices that receipt as the set (migration 0021), not as the main dish alone."""
    c, w, url, d = world
    today = _today(url)
    body = {"periods": {"lunch": [d["plov"], d["salad"]]}}
    r = c.put(f"/api/v1/schools/s1/menu/{today}", headers=w.auth("school_admin"), json=body)
    assert r.status_code == 200, r.text
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO meal_categories (school_id, kind, name, price)"
            " VALUES ('s1', 'paid', 'Paid', 700)"
        )
        conn.execute("UPDATE people SET meal_category = 3 WHERE id = %s", (w.ids["amir"],))
        for seq, dish in ((1, d["plov"]), (2, d["tea"]), (3, None)):
            conn.execute(
                "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
                " meal_category, occurred_at, day, dish_id)"
                " VALUES ('ct-1', 1, %s, 's1', %s, 3, now(), %s, %s)",
                (seq, w.ids["amir"], today, dish),
            )
        prices = conn.execute(
            "SELECT seq, price, family_pays FROM meal_receipts ORDER BY seq"
        ).fetchall()
    assert [(s, str(p), str(f)) for s, p, f in prices] == [
        (1, "950.50", "950.50"),  # the set: plov + salad
        (2, "50.00", "50.00"),  # a dish that is no set's main dish: its own price
        (3, "700.00", "700.00"),  # no dish: the category's price
    ]


def test_a_corrected_dish_reaches_the_boards_at_once(world: Any) -> None:
    """The cook finds milk in the salad: its set's new mask is queued to the canteen boards in
    the same request (not at their next status); a dish on no planned set queues nothing."""
    c, w, url, d = world
    tomorrow = (_today(url) + timedelta(days=1)).isoformat()
    body = {"periods": {"lunch": [d["plov"], d["salad"]]}}
    r = c.put(f"/api/v1/schools/s1/menu/{tomorrow}", headers=w.auth("school_admin"), json=body)
    assert r.status_code == 200, r.text
    r = c.patch(f"/api/v1/dishes/{d['tea']}", headers=w.auth("school_admin"), json={"price": "60"})
    assert r.status_code == 200, r.text
    assert [x[1] for x in _commands(url)] == ["queued", "queued"]
    r = c.patch(f"/api/v1/dishes/{d['salad']}", headers=w.auth("school_admin"),
                json={"allergens": ["nuts", "milk"]})  # fmt: skip
    assert r.status_code == 200, r.text
    cmds = _commands(url)
    assert [x[1] for x in cmds] == ["superseded"] * 2 + ["queued"] * 2
    assert cmds[-1][4]["set"]["menu"]["days"][tomorrow]["lunch"][1] == 128 | 64  # nuts, milk
