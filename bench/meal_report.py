"""meal_report: a district's monthly free/subsidised meal report over 2.2 million meal rows.

One throwaway database: 1 district, 50 schools x 2,000 pupils (20 classes each; 60 % free,
30 % reduced, 10 % paid), 22 school days of October 2025, one meal per pupil and day = 2.2 M
meal_receipts, with a mid-month price change. Rows are generated server-side in bulk (triggers
off), then the monthly rollup is built with refresh_meal_rollup per school (timed).

Measured, median of N runs each, in the same run:
- ours: the district report (cloud.reports.build.district_meals: per school x category totals)
  and the district's full per-pupil lines (build.meal_lines, 100,000 lines), both from meal_rollup;
- baseline: the same two reports computed from meal_receipts directly (each meal priced at its
  time through the price history by a range join), i.e. without the rollup.
Also: what the rollup trigger costs the ingest, per 500-receipt statement, vs the trigger off.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import psycopg

from bench.common import PG_ADMIN_URL, Row, median

SCHOOLS = 50
PUPILS = 2_000
CLASSES = 20
MONTH = date(2025, 10, 1)
GOAL_S = 2.0

# The same reports straight from meal_receipts: each meal priced through the price history with
# a range join (meal_price_periods; a hash join, not a lookup per meal), aggregated per query.
_PRICED = """
WITH periods AS MATERIALIZED (SELECT * FROM meal_price_periods(%(schools)s)),
priced AS (
    SELECT m.school_id, m.person_id, m.meal_category AS code, f.price AS price,
           CASE m.meal_category WHEN 1 THEN 0 ELSE o.price END AS paid
    FROM meal_receipts m
    LEFT JOIN periods f ON f.school_id = m.school_id AND f.code = 3
         AND m.occurred_at >= f.valid_from AND m.occurred_at < f.valid_to
    LEFT JOIN periods o ON o.school_id = m.school_id AND o.code = m.meal_category
         AND m.occurred_at >= o.valid_from AND m.occurred_at < o.valid_to
    WHERE m.school_id = ANY(%(schools)s) AND m.day >= %(month)s
      AND m.day < (%(month)s::date + interval '1 month')::date
      AND m.person_id IS NOT NULL AND m.meal_category IN (1, 2)
)
"""

_BASE_LINES = (
    _PRICED
    + """
SELECT r.school_id, r.person_id, p.full_name, coalesce(cl.name, ''), r.code,
       coalesce(mc.name, ''), count(*), coalesce(sum(r.price), 0), coalesce(sum(r.paid), 0),
       coalesce(sum(greatest(r.price - r.paid, 0)), 0),
       count(*) FILTER (WHERE r.price IS NULL OR r.paid IS NULL)
FROM priced r
JOIN people p ON p.id = r.person_id
LEFT JOIN classes cl ON cl.id = p.class_id
LEFT JOIN meal_categories mc ON mc.school_id = r.school_id AND mc.code = r.code
GROUP BY r.school_id, r.person_id, p.full_name, cl.name, r.code, mc.name
ORDER BY r.school_id, cl.name NULLS LAST, p.full_name, r.person_id, r.code
"""
)

_BASE_TOTALS = (
    _PRICED
    + """
SELECT school_id, code, count(DISTINCT person_id), count(*), coalesce(sum(price), 0),
       coalesce(sum(paid), 0), coalesce(sum(greatest(price - paid, 0)), 0)
FROM priced GROUP BY 1, 2 ORDER BY 1, 2
"""
)


def _populate(conn: psycopg.Connection[Any]) -> tuple[int, list[str]]:
    conn.execute("SET session_replication_role = replica")  # no triggers while bulk loading
    region = conn.execute("INSERT INTO regions (name) VALUES ('Bench') RETURNING id").fetchone()
    assert region is not None
    d = conn.execute(
        "INSERT INTO districts (region_id, name) VALUES (%s, 'Bench district') RETURNING id",
        (region[0],),
    ).fetchone()
    assert d is not None
    district = int(d[0])
    schools = [f"b{i:03d}" for i in range(SCHOOLS)]
    conn.execute(
        "INSERT INTO schools (id, name, site_key, district_id)"
        " SELECT s, 'Школа ' || s, '\\x00'::bytea, %s FROM unnest(%s::text[]) s",
        (district, schools),
    )
    conn.execute(
        "INSERT INTO classes (school_id, name) SELECT s, c || 'А'"
        " FROM unnest(%s::text[]) s, generate_series(1, %s) c",
        (schools, CLASSES),
    )
    # categories go through their trigger (price history): turn triggers back on for them
    conn.execute("SET session_replication_role = origin")
    for kind, price in (("free", 0), ("reduced", 200), ("paid", 600)):
        conn.execute(
            "INSERT INTO meal_categories (school_id, kind, name, price)"
            " SELECT s, %s, initcap(%s), %s FROM unnest(%s::text[]) s",
            (kind, kind, price, schools),
        )
    conn.execute(  # mid-month price change
        "INSERT INTO meal_category_prices (category_id, valid_from, price)"
        " SELECT id, '2025-10-15 00:00+05', CASE code WHEN 2 THEN 250 WHEN 3 THEN 700 ELSE 0 END"
        " FROM meal_categories"
    )
    conn.execute("SET session_replication_role = replica")
    conn.execute(
        "INSERT INTO people (school_id, kind, full_name, meal_category, class_id)"
        " SELECT c.school_id, 'student', 'Ученик ' || c.school_id || '-' || n,"
        "        CASE WHEN n %% 10 < 6 THEN 1 WHEN n %% 10 < 9 THEN 2 ELSE 3 END, c.id"
        " FROM classes c, generate_series(1, %s) n",
        (PUPILS // CLASSES,),
    )
    days = conn.execute(
        "SELECT array_agg(d::date) FROM generate_series(%s::date, %s::date + 30, '1 day') d"
        " WHERE extract(isodow FROM d) < 6",
        (MONTH, MONTH),
    ).fetchone()
    assert days is not None
    school_days = days[0][:22]
    conn.execute(  # priced as meal_receipts_price would (the trigger is off): every school has
        # all three categories; the report and the Social Wallet read these columns (D24-F)
        "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id, meal_category,"
        " occurred_at, day, price, family_pays, subsidy)"
        " WITH periods AS MATERIALIZED (SELECT * FROM meal_price_periods(%s)),"
        " r AS (SELECT p.school_id, p.id, p.meal_category, d,"
        "              (d + time '11:00' + (p.id %% 60) * interval '1 minute')"
        "              AT TIME ZONE 'Asia/Almaty' AS at"
        "       FROM people p, unnest(%s::date[]) d)"
        " SELECT 'c-' || r.school_id, 1, row_number() OVER (), r.school_id, r.id,"
        "        r.meal_category, r.at, r.d, f.price,"
        "        CASE r.meal_category WHEN 1 THEN 0 WHEN 3 THEN f.price ELSE o.price END,"
        "        greatest(f.price - CASE r.meal_category WHEN 1 THEN 0 WHEN 3 THEN f.price"
        "                                ELSE o.price END, 0)"
        " FROM r JOIN periods f ON f.school_id = r.school_id AND f.code = 3"
        "        AND r.at >= f.valid_from AND r.at < f.valid_to"
        " JOIN periods o ON o.school_id = r.school_id AND o.code = r.meal_category"
        "        AND r.at >= o.valid_from AND r.at < o.valid_to",
        (schools, school_days),
    )
    conn.execute("SET session_replication_role = origin")
    conn.execute("ANALYZE")
    return district, schools


def _time(fn: Callable[[], Any], n: int) -> tuple[float, Any]:
    xs, out = [], None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        xs.append(time.perf_counter() - t)
    return median(xs), out


def _trigger_cost(conn: psycopg.Connection[Any], schools: list[str], on: bool) -> float:
    """Median ms of one 500-receipt INSERT (the ingest's statement shape), trigger on or off."""
    conn.execute(
        f"ALTER TABLE meal_receipts {'ENABLE' if on else 'DISABLE'} TRIGGER meal_rollup_add"
    )
    sw = conn.execute(
        "SELECT 1 FROM pg_trigger WHERE tgname = 'meal_receipts_to_social_wallet'"
    ).fetchone()
    if sw:  # measure ours, not the Social Wallet outbox
        conn.execute("ALTER TABLE meal_receipts DISABLE TRIGGER meal_receipts_to_social_wallet")
    conn.commit()
    base = 10_000_000 if on else 20_000_000
    xs = []
    for i in range(20):
        t = time.perf_counter()
        conn.execute(
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
            " meal_category, occurred_at, day)"
            " SELECT 'c-' || p.school_id, 2, %s + row_number() OVER (), p.school_id, p.id,"
            "        p.meal_category, timestamptz '2025-10-31 11:00+05', date '2025-10-31'"
            " FROM people p WHERE p.school_id = %s ORDER BY p.id LIMIT 500",
            (base + i * 1000, schools[i % len(schools)]),
        )
        conn.commit()
        xs.append((time.perf_counter() - t) * 1000)
    conn.execute("ALTER TABLE meal_receipts ENABLE TRIGGER meal_rollup_add")
    if sw:
        conn.execute("ALTER TABLE meal_receipts ENABLE TRIGGER meal_receipts_to_social_wallet")
    conn.commit()
    return median(xs)


def run(repeat: int = 5) -> list[Row]:
    from cloud.db.migrate import apply
    from cloud.reports import build

    name = f"qadam_bench_{uuid.uuid4().hex[:10]}"
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        apply(url)
        with psycopg.connect(url) as conn:
            t = time.perf_counter()
            district, schools = _populate(conn)
            conn.commit()
            load_s = time.perf_counter() - t
            rows = conn.execute("SELECT count(*) FROM meal_receipts").fetchone()
            n_meals = int(rows[0]) if rows else 0
            t = time.perf_counter()
            for s in schools:
                conn.execute("SELECT refresh_meal_rollup(%s, %s)", (s, MONTH))
            conn.commit()
            rollup_s = time.perf_counter() - t
            conn.execute("ANALYZE meal_rollup")
            print(
                f"loaded {n_meals:,} meal rows in {load_s:.1f} s; rollup built in {rollup_s:.1f} s"
            )
            params = {"schools": schools, "month": MONTH}

            ours_tot, d = _time(lambda: build.district_meals(conn, district, MONTH), repeat)
            base_tot, bt = _time(lambda: conn.execute(_BASE_TOTALS, params).fetchall(), repeat)
            ours_lines, ol = _time(lambda: build.meal_lines(conn, schools, MONTH), repeat)
            base_lines, bl = _time(lambda: conn.execute(_BASE_LINES, params).fetchall(), repeat)
            # both ways agree to the tenge
            assert str(sum(r[6] for r in bt)) == d["total"]["subsidy"], (bt[:2], d["total"])
            assert len(ol) == len(bl) and sum(x["quantity"] for x in ol) == d["total"]["quantity"]
            conn.commit()
            trig_on = _trigger_cost(conn, schools, True)
            trig_off = _trigger_cost(conn, schools, False)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"district: {len(d['schools'])} schools, {d['total']['quantity']:,} free/reduced meals,"
          f" subsidy {d['total']['subsidy']} KZT; {len(ol):,} per-pupil lines")  # fmt: skip
    goal = f"<= {GOAL_S:g} s"
    return [
        Row("meal rows in the district", n_meals, "rows"),
        Row(
            "district report (totals per school x category)",
            round(ours_tot, 4),
            "s",
            round(base_tot, 4),
            goal=goal,
        ),  # fmt: skip
        Row(
            "district per-pupil lines (90k free/reduced)",
            round(ours_lines, 4),
            "s",
            round(base_lines, 4),
            goal=goal,
        ),  # fmt: skip
        Row("rollup rebuild, whole district (50 schools)", round(rollup_s, 2), "s"),
        Row(
            "ingest statement of 500 receipts, rollup trigger on",
            round(trig_on, 2),
            "ms",
            round(trig_off, 2),
        ),  # fmt: skip
    ]
