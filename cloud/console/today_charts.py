"""The Today page's charts (D28-H): pupils' arrivals by hour today, and arrivals and meals by
day this month against the same days of last month. The numbers come from the tables the page
already reads (attendance, meal_receipts), in the school's zone; lateness and arrival as the
page counts them (a first entry of the day)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import psycopg
from babel.numbers import format_decimal

from cloud.console import charts, i18n
from cloud.console.i18n import N_

Conn = psycopg.Connection[Any]
FIRST_HOUR, LAST_HOUR = 7, 17  # always drawn; earlier or later hours widen the chart


@dataclass
class Series:
    by_hour: dict[int, int] = field(default_factory=dict)
    arrivals: dict[date, int] = field(default_factory=dict)  # this month and last month
    meals: dict[date, int] = field(default_factory=dict)


def month_start(day: date) -> date:
    return day.replace(day=1)


def last_month_start(day: date) -> date:
    return month_start(month_start(day) - timedelta(days=1))


def series(conn: Conn, school_id: str, day: date, zone: str) -> Series:
    s = Series()
    since = last_month_start(day)
    s.by_hour = {int(h): int(n) for h, n in conn.execute(
        "SELECT extract(hour FROM a.first_in AT TIME ZONE %s)::int, count(*)"
        " FROM attendance a JOIN people p ON p.id = a.person_id AND p.kind = 'student'"
        "  AND p.active"
        " WHERE a.school_id = %s AND a.day = %s AND a.first_in IS NOT NULL GROUP BY 1",
        (zone, school_id, day),
    ).fetchall()}  # fmt: skip
    s.arrivals = {d: int(n) for d, n in conn.execute(
        "SELECT a.day, count(*) FROM attendance a"
        " JOIN people p ON p.id = a.person_id AND p.kind = 'student'"
        " WHERE a.school_id = %s AND a.day BETWEEN %s AND %s AND a.first_in IS NOT NULL"
        " GROUP BY 1",
        (school_id, since, day),
    ).fetchall()}  # fmt: skip
    s.meals = {d: int(n) for d, n in conn.execute(
        "SELECT m.day, count(*) FROM meal_receipts m"
        " WHERE m.school_id = %s AND m.day BETWEEN %s AND %s GROUP BY 1",
        (school_id, since, day),
    ).fetchall()}  # fmt: skip
    return s


def build(s: Series, day: date, lang: str) -> list[tuple[str, charts.Chart]]:
    """(id, chart) for the page, titles and numbers in ``lang``."""

    def t(message: str) -> str:
        return i18n.gettext(lang, message)

    def num(v: float) -> str:
        return format_decimal(v, locale=i18n.CLDR[lang])

    hours = range(min([FIRST_HOUR, *s.by_hour]), max([LAST_HOUR, *s.by_hour]) + 1)
    by_hour = charts.bar_chart(
        t(N_("Pupils who came in, by hour, today")), t(N_("Hour")), t(N_("Pupils")),
        [(f"{h:02d}", s.by_hour.get(h, 0), num(s.by_hour.get(h, 0))) for h in hours],
        tick_text=num,
    )  # fmt: skip
    first, before = month_start(day), last_month_start(day)
    days = [first + timedelta(days=i) for i in range((day - first).days + 1)]

    def month_chart(title: str, header: str, values: dict[date, int]) -> charts.Chart:
        compare: list[tuple[float, str] | None] = []
        for d in days:
            try:
                then = before.replace(day=d.day)
            except ValueError:  # the 31st: last month had no such day
                compare.append(None)
                continue
            compare.append((values.get(then, 0), num(values.get(then, 0))))
        return charts.bar_chart(
            title, t(N_("Day")), header,
            [(str(d.day), values.get(d, 0), num(values.get(d, 0))) for d in days],
            compare_header=t(N_("Same day last month")), compare=compare, tick_text=num,
        )  # fmt: skip

    return [
        ("chart-hours", by_hour),
        ("chart-arrivals", month_chart(t(N_("Pupils who came in, by day, this month")),
                                       t(N_("This month")), s.arrivals)),
        ("chart-meals", month_chart(t(N_("Meals served, by day, this month")),
                                    t(N_("This month")), s.meals)),
    ]  # fmt: skip
