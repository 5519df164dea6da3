"""The content of the monthly reports, read from the database (docs/reports.md).

Every builder returns a JSON-shaped dict (money as "123.45" strings, dates ISO, times HH:MM:SS),
the same shape that is frozen into ``reports.data`` and that the renderers read.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, time
from decimal import Decimal
from typing import Any

import psycopg

from cloud.domain.errors import Invalid, NotFound

Conn = psycopg.Connection[Any]
ZERO = Decimal("0.00")
CATEGORY_KINDS = {1: "free", 2: "reduced", 3: "paid"}
MONEY = ("cost", "paid", "subsidy")


def parse_month(value: str) -> date:
    """``YYYY-MM`` -> the first day of that month."""
    try:
        y, m = value.split("-")
        if len(y) != 4 or len(m) != 2:
            raise ValueError
        return date(int(y), int(m), 1)
    except ValueError:
        raise Invalid("month", "must be YYYY-MM") from None


def next_month(m: date) -> date:
    return date(m.year + (m.month == 12), m.month % 12 + 1, 1)


def prev_month(m: date) -> date:
    return date(m.year - (m.month == 1), (m.month - 2) % 12 + 1, 1)


def money(v: Decimal | None) -> str:
    return str((v if v is not None else ZERO).quantize(ZERO))


def _hms(t: time | None) -> str:
    return "" if t is None else t.strftime("%H:%M:%S")


def school_info(conn: Conn, school_id: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT s.id, s.name, s.timezone, s.day_start, d.id, d.name FROM schools s"
        " LEFT JOIN districts d ON d.id = s.district_id WHERE s.id = %s",
        (school_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"school {school_id!r} not found")
    return {
        "id": row[0],
        "name": row[1],
        "timezone": row[2],
        "day_start": row[3].strftime("%H:%M"),
        "district_id": row[4],
        "district": row[5] or "",
    }


# ---- meals ----------------------------------------------------------------------------------

# Per pupil and category, from the monthly rollup. price/paid = -1: the school had no category
# row to price the meal with ("unpriced").
_MEAL_LINES = """
SELECT r.school_id, r.person_id, p.full_name, coalesce(cl.name, ''), r.code,
       coalesce(mc.name, ''),
       sum(r.quantity)::bigint,
       coalesce(sum(r.quantity * r.price) FILTER (WHERE r.price >= 0), 0),
       coalesce(sum(r.quantity * r.paid) FILTER (WHERE r.paid >= 0), 0),
       coalesce(sum(r.quantity * greatest(r.price - r.paid, 0))
                FILTER (WHERE r.price >= 0 AND r.paid >= 0), 0),
       coalesce(sum(r.quantity) FILTER (WHERE r.price < 0 OR r.paid < 0), 0)::bigint
FROM meal_rollup r
JOIN people p ON p.id = r.person_id
LEFT JOIN classes cl ON cl.id = p.class_id
LEFT JOIN meal_categories mc ON mc.school_id = r.school_id AND mc.code = r.code
WHERE r.school_id = ANY(%(schools)s) AND r.month = %(month)s AND r.code IN (1, 2)
GROUP BY r.school_id, r.person_id, p.full_name, cl.name, r.code, mc.name
ORDER BY r.school_id, cl.name NULLS LAST, p.full_name, r.person_id, r.code
"""

# Per school and category (the district report): the same sums without the pupil dimension.
_SCHOOL_TOTALS = """
SELECT r.school_id, r.code,
       count(DISTINCT r.person_id)::bigint,
       sum(r.quantity)::bigint,
       coalesce(sum(r.quantity * r.price) FILTER (WHERE r.price >= 0), 0),
       coalesce(sum(r.quantity * r.paid) FILTER (WHERE r.paid >= 0), 0),
       coalesce(sum(r.quantity * greatest(r.price - r.paid, 0))
                FILTER (WHERE r.price >= 0 AND r.paid >= 0), 0),
       coalesce(sum(r.quantity) FILTER (WHERE r.price < 0 OR r.paid < 0), 0)::bigint
FROM meal_rollup r
WHERE r.school_id = ANY(%(schools)s) AND r.month = %(month)s AND r.code IN (1, 2)
GROUP BY r.school_id, r.code
ORDER BY r.school_id, r.code
"""


def _category_label(code: int, name: str) -> str:
    kind = CATEGORY_KINDS.get(code, str(code))
    return f"{name} ({kind})" if name and name.lower() != kind else kind


def _sum_into(acc: dict[str, Any], line: dict[str, Any]) -> None:
    acc["quantity"] = acc.get("quantity", 0) + line["quantity"]
    acc["unpriced"] = acc.get("unpriced", 0) + line.get("unpriced", 0)
    for k in MONEY:
        acc[k] = Decimal(acc.get(k, ZERO)) + Decimal(line[k])


def _fmt_totals(acc: dict[str, Any], pupils: int) -> dict[str, Any]:
    return {
        "pupils": pupils,
        "quantity": acc.get("quantity", 0),
        "cost": money(acc.get("cost")),
        "paid": money(acc.get("paid")),
        "subsidy": money(acc.get("subsidy")),
        "unpriced": acc.get("unpriced", 0),
    }


def meal_lines(conn: Conn, schools: list[str], month: date) -> list[dict[str, Any]]:
    rows = conn.execute(_MEAL_LINES, {"schools": schools, "month": month}).fetchall()
    return [
        {
            "school_id": r[0],
            "person_id": r[1],
            "name": r[2],
            "class": r[3],
            "code": r[4],
            "category": _category_label(r[4], r[5]),
            "quantity": int(r[6]),
            "cost": money(r[7]),
            "paid": money(r[8]),
            "subsidy": money(r[9]),
            "unpriced": int(r[10]),
        }
        for r in rows
    ]


def _totals_by_category(lines: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    by_cat: dict[str, dict[str, Any]] = defaultdict(dict)
    pupils: dict[str, set[int]] = defaultdict(set)
    total: dict[str, Any] = {}
    for line in lines:
        _sum_into(by_cat[line["category"]], line)
        pupils[line["category"]].add(line["person_id"])
        _sum_into(total, line)
    cats = [
        {"category": c, **_fmt_totals(acc, len(pupils[c]))} for c, acc in sorted(by_cat.items())
    ]
    all_pupils = {line["person_id"] for line in lines}
    return cats, _fmt_totals(total, len(all_pupils))


def meals(conn: Conn, school_id: str, month: date, *, refresh: bool = True) -> dict[str, Any]:
    """The school's monthly free and subsidised meal report, with its cross-check."""
    school = school_info(conn, school_id)
    if refresh:
        conn.execute("SELECT refresh_meal_rollup(%s, %s)", (school_id, month))
    lines = meal_lines(conn, [school_id], month)
    for line in lines:
        del line["school_id"], line["code"]
    cats, total = _totals_by_category(lines)
    unknown = conn.execute(
        "SELECT count(*) FROM meal_receipts WHERE school_id = %s AND day >= %s AND day < %s"
        " AND person_id IS NULL",
        (school_id, month, next_month(month)),
    ).fetchone()
    check = crosscheck(conn, school_id, month)
    return {
        "kind": "meals",
        "school": school,
        "month": month.strftime("%Y-%m"),
        "lines": lines,
        "by_category": cats,
        "total": total,
        "unknown_card_receipts": int(unknown[0]) if unknown else 0,
        "crosscheck": check,
    }


def district_meals(conn: Conn, district_id: int, month: date) -> dict[str, Any]:
    """District totals, per category and per school (from the rollup; no pupil lines)."""
    d = conn.execute(
        "SELECT d.name, r.name FROM districts d JOIN regions r ON r.id = d.region_id"
        " WHERE d.id = %s",
        (district_id,),
    ).fetchone()
    if d is None:
        raise NotFound(f"district {district_id} not found")
    schools = conn.execute(
        "SELECT s.id, s.name, rp.status FROM schools s LEFT JOIN reports rp ON"
        " rp.school_id = s.id AND rp.month = %s AND rp.kind = 'meals'"
        " WHERE s.district_id = %s ORDER BY s.id",
        (month, district_id),
    ).fetchall()
    ids = [str(s[0]) for s in schools]
    rows = conn.execute(_SCHOOL_TOTALS, {"schools": ids, "month": month}).fetchall()
    cat_names = {
        (str(r[0]), int(r[1])): str(r[2])
        for r in conn.execute(
            "SELECT school_id, code, name FROM meal_categories WHERE school_id = ANY(%s)", (ids,)
        ).fetchall()
    }
    per_school: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_kind: dict[str, dict[str, Any]] = defaultdict(dict)
    kind_pupils: dict[str, int] = defaultdict(int)
    total: dict[str, Any] = {}
    pupils_total = 0
    for r in rows:
        line: dict[str, Any] = {
            "category": _category_label(int(r[1]), cat_names.get((str(r[0]), int(r[1])), "")),
            "pupils": int(r[2]),
            "quantity": int(r[3]),
            "cost": money(r[4]),
            "paid": money(r[5]),
            "subsidy": money(r[6]),
            "unpriced": int(r[7]),
        }
        per_school[str(r[0])].append(line)
        kind = CATEGORY_KINDS[int(r[1])]
        _sum_into(by_kind[kind], line)
        kind_pupils[kind] += line["pupils"]
        _sum_into(total, line)
        pupils_total += line["pupils"]  # a pupil has one category per school-month, mostly
    out_schools = []
    for sid, name, status in schools:
        acc: dict[str, Any] = {}
        n = 0
        for line in per_school.get(str(sid), []):
            _sum_into(acc, line)
            n += line["pupils"]
        out_schools.append(
            {
                "school_id": sid,
                "name": name,
                "report_status": status or "not generated",
                "categories": per_school.get(str(sid), []),
                "total": _fmt_totals(acc, n),
            }
        )
    return {
        "kind": "district_meals",
        "district": {"id": district_id, "name": d[0], "region": d[1]},
        "month": month.strftime("%Y-%m"),
        "schools": out_schools,
        "by_category": [
            {"category": k, **_fmt_totals(acc, kind_pupils[k])}
            for k, acc in sorted(by_kind.items())
        ],
        "total": _fmt_totals(total, pupils_total),
    }


# ---- cross-check ----------------------------------------------------------------------------

_FED_NOT_PRESENT = """
SELECT m.person_id, p.full_name, coalesce(cl.name, ''), m.day, count(*),
       (min(m.occurred_at) AT TIME ZONE s.timezone)::time
FROM meal_receipts m
JOIN people p ON p.id = m.person_id
JOIN schools s ON s.id = m.school_id
LEFT JOIN classes cl ON cl.id = p.class_id
WHERE m.school_id = %(school)s AND m.day >= %(month)s AND m.day < %(next)s
  AND NOT EXISTS (SELECT 1 FROM attendance a WHERE a.person_id = m.person_id AND a.day = m.day)
GROUP BY m.person_id, p.full_name, cl.name, m.day, s.timezone
ORDER BY m.day, cl.name NULLS LAST, p.full_name, m.person_id
"""

# Eligibility on a day: the latest meal_eligibility row covering it; a person without any
# eligibility history falls back to people.meal_category. Only days on which the canteen served
# anyone count (no false alarms on weekends and holidays).
_PRESENT_NOT_FED = """
WITH canteen_days AS (
    SELECT DISTINCT day FROM meal_receipts
    WHERE school_id = %(school)s AND day >= %(month)s AND day < %(next)s
)
SELECT a.person_id, p.full_name, coalesce(cl.name, ''), a.day,
       coalesce(e.code, p.meal_category), coalesce(e.name, mc.name, ''),
       (a.first_in AT TIME ZONE s.timezone)::time
FROM attendance a
JOIN canteen_days cd ON cd.day = a.day
JOIN people p ON p.id = a.person_id AND p.kind = 'student'
JOIN schools s ON s.id = a.school_id
LEFT JOIN classes cl ON cl.id = p.class_id
LEFT JOIN meal_categories mc ON mc.school_id = p.school_id AND mc.code = p.meal_category
LEFT JOIN LATERAL (
    SELECT c.code, c.name FROM meal_eligibility el
    JOIN meal_categories c ON c.id = el.category_id
    WHERE el.person_id = a.person_id AND el.valid_from <= a.day
      AND (el.valid_until IS NULL OR el.valid_until >= a.day)
    ORDER BY el.valid_from DESC, el.id DESC LIMIT 1
) e ON true
WHERE a.school_id = %(school)s AND a.day >= %(month)s AND a.day < %(next)s
  AND CASE WHEN EXISTS (SELECT 1 FROM meal_eligibility x WHERE x.person_id = a.person_id)
           THEN e.code IN (1, 2)
           ELSE p.meal_category IN (1, 2) END
  AND NOT EXISTS (SELECT 1 FROM meal_receipts m WHERE m.person_id = a.person_id
                  AND m.day = a.day)
ORDER BY a.day, cl.name NULLS LAST, p.full_name, a.person_id
"""


def crosscheck(conn: Conn, school_id: str, month: date) -> dict[str, Any]:
    """Meals vs presence for a school-month: meals recorded for pupils not on site that day, and
    eligible (free/reduced) pupils present on a canteen day but not fed."""
    params = {"school": school_id, "month": month, "next": next_month(month)}
    fed = [
        {
            "person_id": r[0],
            "name": r[1],
            "class": r[2],
            "date": r[3].isoformat(),
            "meals": int(r[4]),
            "first_meal": _hms(r[5]),
        }
        for r in conn.execute(_FED_NOT_PRESENT, params).fetchall()
    ]
    unfed = [
        {
            "person_id": r[0],
            "name": r[1],
            "class": r[2],
            "date": r[3].isoformat(),
            "category": _category_label(int(r[4]), str(r[5])),
            "first_in": _hms(r[6]),
        }
        for r in conn.execute(_PRESENT_NOT_FED, params).fetchall()
    ]
    return {
        "fed_not_present": fed,
        "present_not_fed": unfed,
        "anomalies": len(fed) + len(unfed),
    }


# ---- attendance -----------------------------------------------------------------------------

_ATTENDANCE = """
SELECT p.id, p.full_name, p.kind, coalesce(cl.name, ''), a.day,
       (a.first_in AT TIME ZONE s.timezone)::time,
       (a.last_out AT TIME ZONE s.timezone)::time,
       a.passages,
       CASE WHEN (a.first_in AT TIME ZONE s.timezone)::time > s.day_start
            THEN ceil(extract(epoch FROM (a.first_in AT TIME ZONE s.timezone)::time
                                         - s.day_start) / 60)::int END
FROM attendance a
JOIN people p ON p.id = a.person_id
JOIN schools s ON s.id = a.school_id
LEFT JOIN classes cl ON cl.id = p.class_id
WHERE a.school_id = %(school)s AND a.day >= %(month)s AND a.day < %(next)s
ORDER BY p.kind DESC, cl.name NULLS LAST, p.full_name, p.id, a.day
"""


# Passages without a card in the month (D29-J: the app's QR code, a keypad PIN), per person: the
# month's bounds in the school's zone, so the (school_id, occurred_at) index serves it
_ALT_ID = """
SELECT e.person_id, count(*) FILTER (WHERE e.method = 'qr'),
       count(*) FILTER (WHERE e.method = 'pin')
FROM events e JOIN schools s ON s.id = e.school_id
WHERE e.school_id = %(school)s AND e.method IS NOT NULL AND e.result = 'granted'
  AND e.person_id IS NOT NULL
  AND e.occurred_at >= (%(month)s::timestamp AT TIME ZONE s.timezone)
  AND e.occurred_at < (%(next)s::timestamp AT TIME ZONE s.timezone)
GROUP BY e.person_id
"""


def attendance(conn: Conn, school_id: str, month: date) -> dict[str, Any]:
    """Students and staff: first in, last out and lateness per day; a summary per person (every
    active person of the school, absent ones with 0 days), with how many of their passages
    were by QR code or PIN instead of a card (D29-J)."""
    school = school_info(conn, school_id)
    params = {"school": school_id, "month": month, "next": next_month(month)}
    alt_id = {r[0]: (r[1], r[2]) for r in conn.execute(_ALT_ID, params).fetchall()}
    lines = []
    per: dict[int, dict[str, Any]] = {}
    for r in conn.execute(_ATTENDANCE, params).fetchall():
        lines.append(
            {
                "person_id": r[0],
                "name": r[1],
                "kind": r[2],
                "class": r[3],
                "date": r[4].isoformat(),
                "first_in": _hms(r[5]),
                "last_out": _hms(r[6]),
                "passages": r[7],
                "late_min": r[8] or 0,
            }
        )
        s = per.setdefault(r[0], {"days": 0, "late_days": 0, "late_min": 0})
        s["days"] += 1
        if r[8]:
            s["late_days"] += 1
            s["late_min"] += r[8]
    people = conn.execute(
        "SELECT p.id, p.full_name, p.kind, coalesce(cl.name, '') FROM people p"
        " LEFT JOIN classes cl ON cl.id = p.class_id"
        " WHERE p.school_id = %s AND (p.active OR p.id = ANY(%s))"
        " ORDER BY p.kind DESC, cl.name NULLS LAST, p.full_name, p.id",
        (school_id, list(per)),
    ).fetchall()
    summary = [
        {
            "person_id": r[0],
            "name": r[1],
            "kind": r[2],
            "class": r[3],
            "days_present": per.get(r[0], {}).get("days", 0),
            "days_late": per.get(r[0], {}).get("late_days", 0),
            "late_min": per.get(r[0], {}).get("late_min", 0),
            "by_qr": alt_id.get(r[0], (0, 0))[0],
            "by_pin": alt_id.get(r[0], (0, 0))[1],
        }
        for r in people
    ]
    return {
        "kind": "attendance",
        "school": school,
        "month": month.strftime("%Y-%m"),
        "lines": lines,
        "people": summary,
        "total": {
            "people": len(summary),
            "present_days": len(lines),
            "late_days": sum(1 for x in lines if x["late_min"]),
        },
    }
