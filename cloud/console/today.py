"""The school's day at a glance (the console's Today page): attendance, meals served, boards
offline. Read from the tables the ingest keeps (attendance, meal_receipts, device_status), in the
school's own time zone; the caller has checked the school is in scope (cloud/auth/scope.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import psycopg

from cloud.console import today_charts
from cloud.console.charts import Chart

Conn = psycopg.Connection[Any]
# meal category codes (protocol.md, whitelist attribute): 0 none, 1 free, 2 reduced, 3 paid
CATEGORY_KINDS = {0: "none", 1: "free", 2: "reduced", 3: "paid"}


@dataclass
class Device:
    id: str
    place: str
    mode: str
    online: bool
    last_seen: datetime | None


@dataclass
class Today:
    school_id: str
    school_name: str
    timezone: str
    day: date
    day_start: time
    pupils: int = 0
    arrived: int = 0
    late: int = 0
    left: int = 0
    staff: int = 0
    staff_arrived: int = 0
    meals: list[tuple[str, str, int]] = field(default_factory=list)  # kind, name, count
    devices: list[Device] = field(default_factory=list)
    series: today_charts.Series = field(default_factory=today_charts.Series)

    def charts(self, lang: str) -> list[tuple[str, Chart]]:
        """The page's charts (D28-H), in the page's language."""
        return today_charts.build(self.series, self.day, lang)

    @property
    def absent(self) -> int:
        return max(0, self.pupils - self.arrived)

    @property
    def meals_total(self) -> int:
        return sum(n for _, _, n in self.meals)

    @property
    def offline(self) -> list[Device]:
        return [d for d in self.devices if not d.online]


def today(conn: Conn, school_id: str) -> Today:
    row = conn.execute(
        "SELECT name, timezone, day_start, (now() AT TIME ZONE timezone)::date"
        " FROM schools WHERE id = %s",
        (school_id,),
    ).fetchone()
    assert row is not None, "the caller checked the school exists"
    t = Today(school_id, str(row[0]), str(row[1]), row[3], row[2])
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE kind = 'student'), count(*) FILTER (WHERE kind = 'staff')"
        " FROM people WHERE school_id = %s AND active",
        (school_id,),
    ).fetchone()
    assert counts is not None
    t.pupils, t.staff = int(counts[0]), int(counts[1])
    # arrived: a first entry today; late: after the school's day_start (as the monthly
    # attendance report counts it, cloud/reports/build.py); left: an exit recorded today
    att = conn.execute(
        "SELECT count(*) FILTER (WHERE p.kind = 'student' AND a.first_in IS NOT NULL),"
        " count(*) FILTER (WHERE p.kind = 'student'"
        "   AND (a.first_in AT TIME ZONE %(tz)s)::time > %(start)s),"
        " count(*) FILTER (WHERE p.kind = 'student' AND a.last_out IS NOT NULL),"
        " count(*) FILTER (WHERE p.kind = 'staff' AND a.first_in IS NOT NULL)"
        " FROM attendance a JOIN people p ON p.id = a.person_id AND p.active"
        " WHERE a.school_id = %(school)s AND a.day = %(day)s",
        {"school": school_id, "day": t.day, "tz": t.timezone, "start": t.day_start},
    ).fetchone()
    assert att is not None
    t.arrived, t.late, t.left, t.staff_arrived = (int(v) for v in att)
    meals = conn.execute(
        "SELECT coalesce(m.meal_category, 0), coalesce(c.name, ''), count(*)"
        " FROM meal_receipts m LEFT JOIN meal_categories c"
        "   ON c.school_id = m.school_id AND c.code = m.meal_category"
        " WHERE m.school_id = %s AND m.day = %s"
        " GROUP BY 1, 2 ORDER BY 1",
        (school_id, t.day),
    ).fetchall()
    t.meals = [(CATEGORY_KINDS.get(int(c), "none"), str(name), int(n)) for c, name, n in meals]
    devices = conn.execute(
        "SELECT d.id, d.place, d.mode, coalesce(ds.online, false), ds.last_seen"
        " FROM devices d LEFT JOIN device_status ds ON ds.device_id = d.id"
        " WHERE d.school_id = %s ORDER BY d.id",
        (school_id,),
    ).fetchall()
    t.devices = [Device(str(r[0]), str(r[1]), str(r[2]), bool(r[3]), r[4]) for r in devices]
    t.series = today_charts.series(conn, school_id, t.day, t.timezone)
    return t


def schools_in(conn: Conn, ids: list[str] | None) -> list[tuple[str, str]]:
    """(id, name) of the schools a principal may read (``ids`` from scope.school_ids; None:
    every school), for the school pickers."""
    if ids is None:
        rows = conn.execute("SELECT id, name FROM schools ORDER BY name, id LIMIT 2000").fetchall()
    else:
        rows = conn.execute(
            "SELECT id, name FROM schools WHERE id = ANY(%s) ORDER BY name, id", (ids,)
        ).fetchall()
    return [(str(r[0]), str(r[1])) for r in rows]


@dataclass
class SchoolDay:
    """One row of the district's roll-up: a school's day in numbers."""

    id: str
    name: str
    pupils: int
    arrived: int
    late: int
    meals: int
    devices: int
    offline: int

    @property
    def absent(self) -> int:
        return max(0, self.pupils - self.arrived)


def rollup(conn: Conn, schools: list[tuple[str, str]]) -> list[SchoolDay]:
    """Today in each of ``schools`` (id, name; already scoped), each on its own local date: one
    grouped query per table, on the (school_id, day) indexes."""
    ids = [s for s, _ in schools]
    q = {
        "pupils": "SELECT school_id, count(*), 0 FROM people"
        " WHERE school_id = ANY(%(ids)s) AND kind = 'student' AND active GROUP BY 1",
        "arrived": "SELECT a.school_id, count(*) FILTER (WHERE a.first_in IS NOT NULL),"
        " count(*) FILTER (WHERE (a.first_in AT TIME ZONE s.timezone)::time > s.day_start)"
        " FROM attendance a JOIN schools s ON s.id = a.school_id"
        " JOIN people p ON p.id = a.person_id AND p.kind = 'student' AND p.active"
        " WHERE a.school_id = ANY(%(ids)s) AND a.day = (now() AT TIME ZONE s.timezone)::date"
        " GROUP BY 1",
        "meals": "SELECT m.school_id, count(*), 0 FROM meal_receipts m"
        " JOIN schools s ON s.id = m.school_id"
        " WHERE m.school_id = ANY(%(ids)s) AND m.day = (now() AT TIME ZONE s.timezone)::date"
        " GROUP BY 1",
        "devices": "SELECT d.school_id, count(*), count(*) FILTER (WHERE NOT coalesce(ds.online,"
        " false)) FROM devices d LEFT JOIN device_status ds ON ds.device_id = d.id"
        " WHERE d.school_id = ANY(%(ids)s) GROUP BY 1",
    }
    got = {k: {str(r[0]): (int(r[1]), int(r[2])) for r in conn.execute(sql, {"ids": ids})}
           for k, sql in q.items()}  # fmt: skip
    zero = (0, 0)
    return [
        SchoolDay(sid, name, got["pupils"].get(sid, zero)[0], *got["arrived"].get(sid, zero),
                  got["meals"].get(sid, zero)[0], *got["devices"].get(sid, zero))
        for sid, name in schools
    ]  # fmt: skip
