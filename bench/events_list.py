"""events_list: what dropping the index on time alone (migration 0015, D23) costs the lists that
span several schools, and what it would cost without the per-school merge.

One throwaway database: 200 schools x 2 devices, 2,000,000 taps over 61 days (generated
server-side). Each query is the page the API runs (cloud.api.events.page_query; the total is
counted the same way in every variant and is timed on its own), on a connection set up as the API's,
median of 7 executions per run:
- ours: what the API picks (cloud.api.events.merge_pays): each school's newest merged, or for a
  deep page one scan (no time index);
- baseline: one ordered scan over a time index (occurred_at DESC, seq DESC), as before 0015,
  with that index re-created in the same database for the measurement;
- also: one ordered scan with no time index (what dropping the index alone would do).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql

from bench.common import Row, database, median
from cloud.api.deps import API_SESSION_OPTIONS
from cloud.api.events import merge_pays, page_query

SCHOOLS = 200
EVENTS = 2_000_000
DAYS = 61
EXECUTIONS = 7

# (label, limit, offset, district: the first 20 schools instead of all)
PAGES = [
    ("operator, newest 100", 100, 0, False),
    ("operator, 100 at offset 5,000", 100, 5_000, False),
    ("district of 20 schools, newest 100", 100, 0, True),
]
_DISTRICT = [f"ls{i:03d}" for i in range(20)]


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
        conn.execute("ANALYZE events")


def _page_ms(conn: psycopg.Connection[Any], limit: int, offset: int, district: bool,
             merge: bool) -> float:  # fmt: skip
    if district:
        cond = sql.SQL("e.school_id = ANY(%(scope_schools)s)")
        schools_in = sql.SQL("unnest(%(scope_schools)s::text[])")
    else:
        cond, schools_in = sql.SQL("TRUE"), sql.SQL("(SELECT id FROM schools)")
    query = page_query(cond, schools_in if merge else None)
    params = {"limit": limit, "offset": offset, "window": limit + offset,
              "scope_schools": _DISTRICT}  # fmt: skip
    times = []
    for _ in range(EXECUTIONS):
        t0 = time.perf_counter()
        rows = conn.execute(query, params).fetchall()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(rows) != limit:
            raise AssertionError(f"{len(rows)} rows, {limit} asked for")
    return median(times)


def _merges(window: int, district: bool) -> bool:
    """What the API picks for this page (bench.b1 from database() is one more school)."""
    if district:
        return merge_pays(window, len(_DISTRICT), EVENTS * len(_DISTRICT) // SCHOOLS)
    return merge_pays(window, SCHOOLS + 1, EVENTS)


def run(repeat: int = 3) -> list[Row]:
    results: dict[tuple[str, str], list[float]] = {}
    with database(0) as url:
        t0 = time.perf_counter()
        _populate(url)
        print(f"{EVENTS:,} events in {time.perf_counter() - t0:.0f} s", flush=True)
        with psycopg.connect(url, autocommit=True, options=API_SESSION_OPTIONS) as conn:
            for r in range(repeat):
                for label, limit, offset, district in PAGES:
                    results.setdefault((label, "ours"), []).append(
                        _page_ms(conn, limit, offset, district, merge=_merges(limit + offset,
                                                                              district)))
                    results.setdefault((label, "scan"), []).append(
                        _page_ms(conn, limit, offset, district, merge=False))
                print(f"run {r + 1}/{repeat} done", flush=True)
            counts = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                conn.execute("SELECT count(*) FROM events e WHERE TRUE").fetchone()
                counts.append((time.perf_counter() - t0) * 1e3)
            conn.execute("CREATE INDEX bench_time_idx ON events (occurred_at DESC, seq DESC)")
            for _ in range(repeat):
                for label, limit, offset, district in PAGES:
                    results.setdefault((label, "indexed"), []).append(
                        _page_ms(conn, limit, offset, district, merge=False))
    rows = []
    for label, limit, offset, district in PAGES:
        ours, indexed = median(results[(label, "ours")]), median(results[(label, "indexed")])
        scan = median(results[(label, "scan")])
        how = "merged per school" if _merges(limit + offset, district) else "one scan"
        rows.append(Row(f"{label}: ours ({how}), ms", ours, "ms", baseline=indexed,
                        goal="baseline: one scan of a time index (before 0015)"))
        rows.append(Row(f"{label}: one scan, no time index, ms", scan, "ms", baseline=indexed,
                        goal="what dropping the index alone would cost"))
    rows.append(Row("operator: the total each page also counts, ms", median(counts), "ms",
                    goal="context: paid with and without the time index"))
    return rows  # fmt: skip
