"""Meal ratings (issue #16, D28-G): a child's guardian rates a dish the child was served that
day, 1-5 and a comment, once per child, dish and day; the school reads averages per dish and
week.

"Served" is what the canteen board recorded: a meal receipt of that child on that (school-local)
day whose dish is the dish, or the main dish of that day's planned set the dish belongs to (the
board reports a set by its main dish, D27-A). A receipt without a dish (a board with no menu)
names no dish, so nothing of that meal can be rated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from cloud.auth.principal import Principal
from cloud.commands.menu import school_today
from cloud.domain import store
from cloud.domain.errors import Conflict, Invalid
from cloud.domain.store import Row

Conn = Any
NOT_SERVED = "not_served"  # the code the app translates


def served_dishes(conn: Conn, person_id: int, first: date, last: date) -> set[tuple[int, date]]:
    """(dish, day) pairs the person was served between the two days (inclusive)."""
    rows = conn.execute(
        "SELECT DISTINCT d.id, r.day FROM meal_receipts r"
        " LEFT JOIN LATERAL (SELECT m.dish_ids FROM menus m WHERE m.school_id = r.school_id"
        "   AND m.day = r.day AND m.dish_ids[1] = r.dish_id ORDER BY m.period LIMIT 1) s ON true"
        " CROSS JOIN LATERAL unnest(coalesce(s.dish_ids, ARRAY[r.dish_id])) AS d(id)"
        " WHERE r.person_id = %s AND r.day BETWEEN %s AND %s AND r.dish_id IS NOT NULL",
        (person_id, first, last),
    ).fetchall()
    return {(int(r[0]), r[1]) for r in rows}


def ratings_of(conn: Conn, person_id: int, first: date, last: date) -> dict[tuple[int, date], Row]:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, dish_id, served_on, score, comment FROM meal_ratings"
            " WHERE person_id = %s AND served_on BETWEEN %s AND %s",
            (person_id, first, last),
        )
        cols = [c.name for c in cur.description or ()]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
    return {(int(r["dish_id"]), r["served_on"]): r for r in rows}


def rate(
    conn: Conn, actor: Principal, school: str, person_id: int, dish_id: int, served_on: date,
    score: int, comment: str,
) -> Row:  # fmt: skip
    """Store one rating (the caller checked the person is in the actor's scope). A dish of
    another school, a future day, a dish not served: Invalid; a second rating: Conflict."""
    dish = conn.execute("SELECT school_id FROM dishes WHERE id = %s", (dish_id,)).fetchone()
    if dish is None or dish[0] != school:
        raise Invalid("dish_id", f"dish {dish_id} is not on this school's menu")
    if served_on > school_today(conn, school):
        raise Invalid("served_on", "served_on is in the future")
    if (dish_id, served_on) not in served_dishes(conn, person_id, served_on, served_on):
        raise Invalid("dish_id", f"dish {dish_id} was not served to this child on {served_on}")
    taken = conn.execute(
        "SELECT 1 FROM meal_ratings WHERE person_id = %s AND dish_id = %s AND served_on = %s",
        (person_id, dish_id, served_on),
    ).fetchone()
    if taken is not None:
        raise Conflict("this child's dish of that day is rated already")
    values = {"person_id": person_id, "dish_id": dish_id, "served_on": served_on,
              "score": score, "comment": comment, "rated_by": actor.user_id}  # fmt: skip
    return store.insert(conn, actor, "meal_ratings", values, school_id=school)


@dataclass(frozen=True)
class DishWeek:
    dish_id: int
    name_kk: str
    name_ru: str
    name_en: str
    ratings: int
    average: Decimal
    lowest: int
    highest: int
    comments: int


def monday_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def weekly_averages(conn: Conn, school: str, monday: date) -> list[DishWeek]:
    """The school's dishes rated in the ISO week starting ``monday``: count and average (two
    decimals), lowest first (what the kitchen should look at). For the API and the console's
    menu planner alike."""
    rows = conn.execute(
        "SELECT d.id, d.name_kk, d.name_ru, d.name_en, count(*), round(avg(r.score), 2),"
        " min(r.score), max(r.score), count(*) FILTER (WHERE r.comment <> '')"
        " FROM meal_ratings r JOIN dishes d ON d.id = r.dish_id"
        " WHERE d.school_id = %s AND r.served_on >= %s AND r.served_on < %s"
        " GROUP BY d.id ORDER BY avg(r.score), d.id",
        (school, monday, monday + timedelta(days=7)),
    ).fetchall()
    return [DishWeek(*r) for r in rows]
