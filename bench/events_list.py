"""events_list: what dropping the index on time alone (migration 0015, D23) costs the lists
that span several schools, and what it would cost without counting and paging per school.

One throwaway database: 200 schools x 2 devices, 2,000,000 taps over 61 days (generated
server-side, then vacuumed). Each case is what GET /api/v1/events runs for one request, its
total and its page (cloud.api.events.fetch_page), on a connection set up as the API's, median of
7 executions per run:
- ours: across the schools as the API runs it: a time window's total counted per school; the
  page merged from each school's newest, or one scan for a deep page without a time window;
- baseline: one list over events with a time index (occurred_at DESC, seq DESC), as before
  0015, that index re-created in the same database after the other variants ran;
- also: one list over events without a time index (what dropping the index alone would do).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from bench.common import Row, database, median
from cloud.api.deps import API_SESSION_OPTIONS
from cloud.api.event_cursor import Cursor
from cloud.api.events import fetch_page

SCHOOLS = 200
EVENTS = 2_000_000
DAYS = 61
EXECUTIONS = 7

# label, limit, offset, after (a cursor this deep), district (20 schools) or operator (all),
# last day only
CASES = [
    ("operator, newest 100", 100, 0, 0, False, False),
    ("operator, 100 at offset 5,000", 100, 5_000, 0, False, False),
    ("operator, 100 after a cursor 5,000 deep", 100, 0, 5_000, False, False),
    ("operator, last day, newest 100", 100, 0, 0, False, True),
    ("district of 20 schools, newest 100", 100, 0, 0, True, False),
    ("district of 20 schools, last day, newest 100", 100, 0, 0, True, True),
]
_DISTRICT = [f"ls{i:03d}" for i in range(20)]
_LAST_DAY = "2025-10-31T00:00:00Z"


def _populate(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO schools (id, name, timezone, site_key)"
            " SELECT 'ls' || lpad(i::text, 3, '0'), 'School ' || i, 'Asia/Almaty',"
            " decode(repeat('ab', 32), 'hex') FROM generate_series(0, %s - 1) i",
            (SCHOOLS,),
        )
        conn.execute(
            "INSERT INTO devices (id, school_id, place, mode, reader)"
            " SELECT 'ld' || i, 'ls' || lpad((i / 2)::text, 3, '0'), 'gate', 'turnstile',"
            " 'mfrc522' FROM generate_series(0, %s - 1) i",
            (SCHOOLS * 2,),
        )
        conn.execute(
            "SELECT ensure_event_partitions('2025-09-01'::timestamptz, '2025-10-31'::timestamptz)"
        )
        # taps in time order, spread over the devices round robin (one seq series per device)
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, card_key, kind, reader, result,"
            " reason, board_time, clock_synced, uptime_ms, occurred_at)"
            " SELECT 'ld' || (i %% %(d)s), 1, i / %(d)s + 1,"
            " 'ls' || lpad(((i %% %(d)s) / 2)::text, 3, '0'), '0123456789abcdef', 'tap', 'in',"
            " 'granted', 'ok', t, true, 0, t"
            " FROM generate_series(0, %(n)s - 1) i,"
            " LATERAL (SELECT '2025-09-01'::timestamptz"
            "   + (i::float8 / %(n)s * %(days)s) * interval '1 day' AS t) x",
            {"d": SCHOOLS * 2, "n": EVENTS, "days": DAYS},
        )


def _ms(conn: psycopg.Connection[Any], case: tuple[Any, ...], ours: bool) -> float:
    """Median ms of one request's queries (total and page, cloud.api.events.fetch_page):
    ``ours`` across the schools as the API runs it (D23), else as one list over ``events`` (the
    form that had the time index)."""
    _, limit, offset, depth, district, last_day = case
    where = [sql.SQL("e.school_id = ANY(%(scope_schools)s)")] if district else []
    if last_day:
        where.append(sql.SQL("e.occurred_at >= %(since)s"))
    cond = sql.SQL(" AND ").join(where) if where else sql.SQL("TRUE")
    params: dict[str, Any] = {"scope_schools": _DISTRICT, "since": _LAST_DAY}
    across = None
    if ours and district:
        across = (sql.SQL("unnest(%(scope_schools)s::text[])"), len(_DISTRICT))
    elif ours:  # + the school of database()
        across = (sql.SQL("(SELECT id FROM schools)"), SCHOOLS + 1)
    after = None
    if depth:
        _, [row] = fetch_page(conn, cond, params, None, last_day, None, 1, depth - 1)
        after = Cursor(row[11], row[2], row[0], row[1])
    times = []
    for _ in range(EXECUTIONS):
        t0 = time.perf_counter()
        _, rows = fetch_page(conn, cond, params, across, last_day, after, limit, offset)
        times.append((time.perf_counter() - t0) * 1e3)
        if len(rows) != limit:
            raise AssertionError(f"{len(rows)} rows, {limit} asked for")
    return median(times)


def run(repeat: int = 3) -> list[Row]:
    results: dict[tuple[str, str], list[float]] = {}
    with database(0) as url:
        t0 = time.perf_counter()
        _populate(url)
        print(f"{EVENTS:,} events in {time.perf_counter() - t0:.0f} s", flush=True)
        with psycopg.connect(url, autocommit=True, options=API_SESSION_OPTIONS) as conn:
            conn.execute("VACUUM ANALYZE events")  # as autovacuum leaves a table that is read
            for r in range(repeat):
                for case in CASES:
                    results.setdefault((case[0], "ours"), []).append(_ms(conn, case, True))
                    results.setdefault((case[0], "plain"), []).append(_ms(conn, case, False))
                print(f"run {r + 1}/{repeat} done", flush=True)
            conn.execute("CREATE INDEX bench_time_idx ON events (occurred_at DESC, seq DESC)")
            for _ in range(repeat):
                for case in CASES:
                    results.setdefault((case[0], "indexed"), []).append(_ms(conn, case, False))
    rows = []
    for label, *_ in CASES:
        indexed = median(results[(label, "indexed")])
        rows.append(Row(f"{label}: ours, ms", median(results[(label, "ours")]), "ms",
                        baseline=indexed, goal="baseline: one list on the time index (< 0015)"))
        rows.append(Row(f"{label}: one list, no time index, ms",
                        median(results[(label, "plain")]), "ms", baseline=indexed,
                        goal="what dropping the index alone would cost"))
    return rows  # fmt: skip
