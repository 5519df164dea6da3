"""The dated menu (D27-A) as people read and plan it: the functions the API's menu routes
(cloud/api/menus.py), the console's planner (cloud/console/menu_planner.py) and the parents'
app call, so each shows and writes the same thing.

A day is ``{period: [dish ids]}`` (the first the main dish). Read, each set carries its dishes
(names in kk/ru/en, price, allergens, photo and thumbnail URLs), their price sum and allergen
OR. Writing a day within the push window queues the canteen boards their new menu."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from cloud.auth import scope
from cloud.auth.principal import Principal
from cloud.commands import menu as board_menus
from cloud.domain import store
from cloud.domain.allergens import to_names
from cloud.domain.dish_photos import thumb_url
from cloud.domain.errors import Invalid

Conn = psycopg.Connection[Any]
Day = dict[str, list[int]]
PLAN_AHEAD_DAYS = 366
# the firmware's periods when a board was never told others (firmware/app/canteen.py)
DEFAULT_PERIODS = ("breakfast", "lunch")


def school_today(conn: Conn, school: str) -> date:
    return board_menus.school_today(conn, school)


def planned(conn: Conn, school: str, first: date, last: date) -> dict[date, Day]:
    """The school's planned days between ``first`` and ``last`` (inclusive), as dish ids."""
    rows = conn.execute(
        "SELECT day, period, dish_ids FROM menus WHERE school_id = %s AND day BETWEEN %s AND %s"
        " ORDER BY day, period",
        (school, first, last),
    ).fetchall()
    days: dict[date, Day] = {}
    for day, period, ids in rows:
        days.setdefault(day, {})[str(period)] = [int(i) for i in ids]
    return days


def expand(conn: Conn, school: str, days: dict[date, Day]) -> list[dict[str, Any]]:
    """Each day with its sets' dishes, price sums and allergen ORs, in date order."""
    ids = sorted({i for d in days.values() for ds in d.values() for i in ds})
    with conn.cursor() as cur:
        cur.execute(
            "SELECT id, name_kk, name_ru, name_en, photo_url, price, allergens, allergen_mask"
            " FROM dishes WHERE id = ANY(%s)",
            (ids,),
        )
        cols = [c.name for c in cur.description or ()]
        dishes = {int(r[0]): dict(zip(cols, r, strict=True)) for r in cur.fetchall()}
    for d in dishes.values():
        d["thumb_url"] = thumb_url(d["photo_url"])
    out = []
    for day, periods in sorted(days.items()):
        sets = {}
        for name, dish_ids in periods.items():
            got = [dishes[i] for i in dish_ids if i in dishes]
            mask = 0
            for d in got:
                mask |= int(d["allergen_mask"])
            sets[name] = {"dishes": got, "price": sum((d["price"] for d in got), Decimal(0)),
                          "allergen_mask": mask, "allergens": to_names(mask)}  # fmt: skip
        out.append({"school_id": school, "date": day, "periods": sets})
    return out


def menu_range(conn: Conn, p: Principal, school: str, first: date, last: date) -> list[dict]:
    """What ``GET /api/v1/schools/{id}/menu?from=&to=`` answers (planned days only), for any
    reader of the school's menu (guardians of its pupils too); NotFound outside the scope."""
    scope.require_school(conn, p, school)
    return expand(conn, school, planned(conn, school, first, last))


def week(conn: Conn, p: Principal, school: str, monday: date) -> list[dict[str, Any]]:
    """The seven days from ``monday``, each present (``periods`` empty when nothing is
    planned): the console's week and the parents' app's week."""
    got = {d["date"]: d for d in menu_range(conn, p, school, monday, monday + timedelta(days=6))}
    days = [monday + timedelta(days=i) for i in range(7)]
    return [got.get(d, {"school_id": school, "date": d, "periods": {}}) for d in days]


def periods_of(conn: Conn, school: str) -> list[str]:
    """The meal periods to plan: the firmware's defaults, the ``meal_periods`` the school's
    canteen boards were last sent, and any already planned, in time order where known."""
    names = list(DEFAULT_PERIODS)
    rows = conn.execute(
        "SELECT DISTINCT ON (c.device_id) c.args -> 'set' -> 'meal_periods'"
        " FROM device_commands c JOIN devices d ON d.id = c.device_id"
        " WHERE d.school_id = %s AND d.mode = 'canteen' AND c.args -> 'set' ? 'meal_periods'"
        " ORDER BY c.device_id, c.id DESC",
        (school,),
    ).fetchall()
    spans: dict[str, str] = {"breakfast": "08:00", "lunch": "12:00"}
    for (periods,) in rows:
        for name, span in (periods or {}).items():
            spans.setdefault(str(name), str(span[0]).zfill(5))
            if name not in names:
                names.append(str(name))
    for (name,) in conn.execute(
        "SELECT DISTINCT period FROM menus WHERE school_id = %s", (school,)
    ).fetchall():
        if name not in names:
            names.append(str(name))
    return sorted(names, key=lambda n: (spans.get(n, "99:99"), n))


def save_day(
    conn: Conn, p: Principal, school: str, day: date, periods: Day, days_ahead: int
) -> tuple[dict[str, Any], list[int]]:
    """Replace the school's menu for one local date (periods not named are removed; ``{}``
    clears). Dishes must be active dishes of the school, each at most once per set; today or
    later only (a past day's meals are priced already). Within today + ``days_ahead`` the
    canteen boards get it. Returns the day as read back and the queued command ids."""
    scope.require_school(conn, p, school)
    today = school_today(conn, school)
    if day < today:
        raise Invalid("date", f"{day} is in the past for this school (today is {today})")
    if day > today + timedelta(days=PLAN_AHEAD_DAYS):
        raise Invalid("date", f"a menu is planned at most {PLAN_AHEAD_DAYS} days ahead")
    wanted = sorted({i for ids in periods.values() for i in ids})
    found = {
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM dishes WHERE school_id = %s AND active AND id = ANY(%s)",
            (school, wanted),
        ).fetchall()
    }
    for name, ids in periods.items():
        if len(set(ids)) != len(ids):
            raise Invalid(f"periods.{name}", "a dish appears twice in the set")
        missing = [i for i in ids if i not in found]
        if missing:
            raise Invalid(f"periods.{name}", f"not active dishes of school {school}: {missing}")
    before = planned(conn, school, day, day).get(day, {})
    conn.execute("DELETE FROM menus WHERE school_id = %s AND day = %s", (school, day))
    for name, ids in periods.items():
        conn.execute(
            "INSERT INTO menus (school_id, day, period, dish_ids, updated_by)"
            " VALUES (%s, %s, %s, %s, %s)",
            (school, day, name, ids, p.user_id),
        )
    after = dict(periods)
    action = "create" if not before else "delete" if not after else "update"
    store.audit(conn, p, action, "menus", f"{school}/{day}",
                {"periods": before} if before else None,
                {"periods": after} if after else None, school)  # fmt: skip
    pushed: list[int] = []
    if day <= today + timedelta(days=days_ahead) and before != after:
        pushed = board_menus.push_school(conn, school, days_ahead)
    return expand(conn, school, {day: after})[0], pushed


def copy_days(
    conn: Conn, p: Principal, school: str, first: date, count: int, to: date, days_ahead: int
) -> list[date]:
    """Copy the planned days of ``first`` .. ``first + count - 1`` onto the same offsets from
    ``to`` (each through save_day: checked, audited, pushed). A day with nothing planned is
    not copied (it does not clear the target). Returns the dates written."""
    scope.require_school(conn, p, school)
    today = school_today(conn, school)
    if to < today:  # every target is checked before any is written
        raise Invalid("to", f"{to} is in the past for this school (today is {today})")
    if to + timedelta(days=count - 1) > today + timedelta(days=PLAN_AHEAD_DAYS):
        raise Invalid("to", f"a menu is planned at most {PLAN_AHEAD_DAYS} days ahead")
    source = planned(conn, school, first, first + timedelta(days=count - 1))
    written = []
    for day, periods in sorted(source.items()):
        target = to + (day - first)
        active = _active_only(conn, school, periods)
        save_day(conn, p, school, target, active, days_ahead)
        written.append(target)
    return written


def _active_only(conn: Conn, school: str, periods: Day) -> Day:
    """The sets without retired dishes (a copy plans what the kitchen still cooks); a set left
    empty is dropped."""
    ids = sorted({i for ds in periods.values() for i in ds})
    active = {
        int(r[0])
        for r in conn.execute(
            "SELECT id FROM dishes WHERE school_id = %s AND active AND id = ANY(%s)",
            (school, ids),
        ).fetchall()
    }
    kept = {name: [i for i in ds if i in active] for name, ds in periods.items()}
    return {name: ds for name, ds in kept.items() if ds}


def dish_name(dish: dict[str, Any], lang: str) -> str:
    """The dish's name in ``lang`` (kk, ru, en); English falls back to Russian when not given."""
    if lang == "kk":
        return str(dish["name_kk"])
    if lang == "en" and dish.get("name_en"):
        return str(dish["name_en"])
    return str(dish["name_ru"])
