"""The canteen menu as a board holds it (protocol.md "Canteen", D27-A) and its push.

A school plans sets per local date and meal period (``menus``, migration 0021: dish ids in
order). A board gets ``{"reduced": R, "days": {date: {period: [ID, ALLERGENS, PRICE, NAME]}}}``
for today and the next ``menu_days_ahead`` days (school-local dates), one set per period as a
list (half the heap of a dict on the board, D27-A), combined here so the board does no more work
than for one dish:

- ``ID``: the first (main) dish, the event's ``dish`` (ratings, receipts);
- ``ALLERGENS``: the OR of the dishes' masks (blocked when any dish hits the card's mask);
- ``PRICE``: the sum of the dishes' prices (what a paid pupil is charged; the cloud prices a
  receipt of that set the same way, 0021 ``meal_receipt_price``);
- ``NAME``: the main dish's name for the display, ``+N`` when the set has more;
- ``reduced`` (once): the school's reduced category price (D13: what the cloud charges).

The push is a ``config`` command (purpose ``menu``) through the command queue, so it is audited,
retried and answered like any command; a newer one supersedes one still waiting."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from cloud.commands import queue

Conn = psycopg.Connection[Any]
NAME_MAX = 16  # the display's line (SSD1306: 16 characters)


def money(v: Decimal) -> str:
    """650 -> "650", 650.5 -> "650.50" (the board's money strings)."""
    q = Decimal(v).quantize(Decimal("0.01"))
    return str(int(q)) if q == q.to_integral_value() else f"{q:.2f}"


def school_today(conn: Conn, school: str) -> date:
    row = conn.execute(
        "SELECT (now() AT TIME ZONE timezone)::date FROM schools WHERE id = %s", (school,)
    ).fetchone()
    if row is None:
        raise LookupError(school)
    return row[0]  # type: ignore[no-any-return]


def board_menu(conn: Conn, school: str, first: date, days: int) -> dict[str, Any]:
    """The menu a canteen board of ``school`` holds for ``first`` and the ``days`` after."""
    rows = conn.execute(
        "SELECT day, period, dish_ids FROM menus WHERE school_id = %s AND day BETWEEN %s AND %s"
        " ORDER BY day, period",
        (school, first, first + timedelta(days=days)),
    ).fetchall()
    ids = sorted({i for r in rows for i in r[2]})
    dishes = {
        int(r[0]): r[1:]
        for r in conn.execute(
            "SELECT id, coalesce(nullif(name_en, ''), name_ru), price, allergen_mask FROM dishes"
            " WHERE id = ANY(%s)",
            (ids,),
        ).fetchall()
    }
    reduced = conn.execute(
        "SELECT price FROM meal_categories WHERE school_id = %s AND code = 2", (school,)
    ).fetchone()
    out: dict[str, dict[str, Any]] = {}
    for day, period, dish_ids in rows:
        got = [dishes[i] for i in dish_ids if i in dishes]
        if not got:
            continue
        name = str(got[0][0])[:NAME_MAX]
        if len(got) > 1:
            name = f"{name[: NAME_MAX - 3]} +{len(got) - 1}"
        mask = 0
        for d in got:
            mask |= int(d[2])
        price = money(sum((d[1] for d in got), Decimal(0)))
        out.setdefault(day.isoformat(), {})[period] = [int(dish_ids[0]), mask, price, name]
    doc: dict[str, Any] = {"days": out}
    if reduced is not None:
        doc["reduced"] = money(reduced[0])
    return doc


def last_pushed(conn: Conn, device: str) -> dict[str, Any] | None:
    """The menu of the board's newest menu command that was not replaced or given up on."""
    row = conn.execute(
        "SELECT args FROM device_commands WHERE device_id = %s AND purpose = 'menu'"
        " AND state IN ('queued', 'sent', 'ok', 'failed') ORDER BY id DESC LIMIT 1",
        (device,),
    ).fetchone()
    if row is None:
        return None
    menu = (row[0].get("set") or {}).get("menu")
    return menu if isinstance(menu, dict) else None


def ensure_menu(conn: Conn, device: str, school: str, days_ahead: int) -> int | None:
    """Queue the board's current menu unless its newest menu command already holds it. A board
    that never had one is not sent an empty menu (a school that plans nothing leaves its boards'
    menus alone). Returns the new command's id, or None."""
    menu = board_menu(conn, school, school_today(conn, school), days_ahead)
    before = last_pushed(conn, device)
    if before == menu or (before is None and not menu["days"]):
        return None
    row = queue.enqueue(conn, device, school, "config", {"set": {"menu": menu}}, actor_id=None,
                        purpose="menu")  # fmt: skip
    return int(row["id"])


def canteen_boards(conn: Conn, school: str) -> list[str]:
    rows = conn.execute(
        "SELECT id FROM devices WHERE school_id = %s AND mode = 'canteen' ORDER BY id", (school,)
    ).fetchall()
    return [str(r[0]) for r in rows]


def push_school(conn: Conn, school: str, days_ahead: int) -> list[int]:
    """Queue every canteen board of ``school`` whose menu changed its current one (after a menu
    write, or a dish of the menu changed: a corrected allergen reaches the counters at once, not
    at the boards' next status). Returns the commands' ids."""
    out = []
    for device in canteen_boards(conn, school):
        cid = ensure_menu(conn, device, school, days_ahead)
        if cid is not None:
            out.append(cid)
    return out
