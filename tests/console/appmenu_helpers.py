"""Seeds for the parents' app's menu, rating and restrictions tests (D28-G): dishes and this
week's and next week's menu of api_world's school s1, and a breakfast the canteen served
Alice today."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg

MILK = 1 << 6  # cloud/domain/allergens.py: bit 6
# name_kk, name_ru, name_en, price, allergen names, mask
DISHES = {
    "porridge": ("Сүт ботқасы", "Молочная каша", "Milk porridge", 250, ["milk"], MILK),
    "tea": ("Шай", "Чай", "Tea", 50, [], 0),
    "plov": ("Палау", "Плов", "Plov", 650, [], 0),
    "salad": ("Жаңғақ салаты", "Салат с орехами", "Nut salad", 300, ["nuts"], 1 << 7),
}


def school_today(conn: psycopg.Connection[Any]) -> date:
    row = conn.execute(
        "SELECT (now() AT TIME ZONE timezone)::date FROM schools WHERE id = 's1'"
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def seed_menu(database_url: str, alice: int) -> dict[str, Any]:
    """Today: breakfast porridge + tea, lunch plov; next Monday: lunch plov + nut salad. The
    canteen served Alice today's breakfast (a receipt naming its main dish, as a board does)."""
    out: dict[str, Any] = {}
    with psycopg.connect(database_url) as conn:
        for key, (kk, ru, en, price, names, mask) in DISHES.items():
            row = conn.execute(
                "INSERT INTO dishes (school_id, name_kk, name_ru, name_en, price, allergens,"
                " allergen_mask) VALUES ('s1', %s, %s, %s, %s, %s, %s) RETURNING id",
                (kk, ru, en, price, names, mask),
            ).fetchone()
            assert row is not None
            out[key] = row[0]
        today = school_today(conn)
        monday = today - timedelta(days=today.weekday()) + timedelta(days=7)
        for day, period, ids in (
            (today, "breakfast", [out["porridge"], out["tea"]]),
            (today, "lunch", [out["plov"]]),
            (monday, "lunch", [out["plov"], out["salad"]]),
        ):
            conn.execute(
                "INSERT INTO menus (school_id, day, period, dish_ids) VALUES ('s1', %s, %s, %s)",
                (day, period, ids),
            )
        conn.execute(
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
            " meal_category, occurred_at, day, dish_id)"
            " VALUES ('cant-1', 1, 1, 's1', %s, 1, now(), %s, %s)",
            (alice, today, out["porridge"]),
        )
        out["today"] = today
        out["next_monday"] = monday
    return out


def ratings(database_url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT person_id, dish_id, served_on, score, comment FROM meal_ratings ORDER BY id"
        ).fetchall()


def restriction_row(database_url: str, person: int) -> tuple[Any, ...]:
    """The enforced mask (people and restrictions), the requested mask, confirmed or not."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT p.allergen_mask, r.allergen_mask, r.requested_mask, r.confirmed_at IS NOT NULL"
            " FROM people p LEFT JOIN allergen_restrictions r ON r.person_id = p.id"
            " WHERE p.id = %s",
            (person,),
        ).fetchone()
    assert row is not None
    return tuple(row)
