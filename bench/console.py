"""console: server time of the web console's pages (issue #15) against the API calls that fetch
the same data, in the same run and database.

One throwaway database: a district of 200 schools x 2 readers, 2,000,000 taps over the last 61
days (to now, generated server-side, then vacuumed); its first school has 5,000 active pupils,
4,700 of whom came in today (attendance rows), 3,000 meals served today. Each request goes
through the whole app in-process (Starlette's TestClient: routing, session lookup, queries,
template rendering), 3 warm-up and N timed requests per case; p95 and median reported:
- Today, school admin (5,000 pupils); the API has no call for today's attendance, so its
  baseline is what the API does return for the page's other data: the school's devices and
  its pupil count (GET /api/v1/devices?school=, GET /api/v1/people?school=&kind=student&limit=1);
- Today, district authority: one row per school of its 200 (pupils, came in, late, meals,
  readers offline) vs GET /api/v1/schools (the API has no roll-up: the list of the schools);
- Live events, school admin (last 24 hours, 50 a page) vs GET /api/v1/events with the same
  filter and page size;
- Live events, district authority (200 schools) vs the same API call for the district.
"""

from __future__ import annotations

import hashlib
import secrets
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from bench.common import Row, database
from cloud.api.app import create_app
from cloud.settings import Settings

SCHOOLS = 200
EVENTS = 2_000_000
DAYS = 61
PUPILS = 5_000
REQUESTS = 40
GOAL = "p95 <= 150 ms (issue #15)"


def _populate(url: str) -> dict[str, str]:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=DAYS)
    with psycopg.connect(url) as conn:
        district = conn.execute(
            "WITH r AS (INSERT INTO regions (name) VALUES ('Bench') RETURNING id)"
            " INSERT INTO districts (region_id, name) SELECT id, 'Bench district' FROM r"
            " RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO schools (id, name, timezone, site_key, district_id)"
            " SELECT 'ls' || lpad(i::text, 3, '0'), 'School ' || i, 'Asia/Almaty',"
            " decode(repeat('ab', 32), 'hex'), %s FROM generate_series(0, %s - 1) i",
            (district, SCHOOLS),
        )
        conn.execute(
            "INSERT INTO devices (id, school_id, place, mode, reader)"
            " SELECT 'ld' || i, 'ls' || lpad((i / 2)::text, 3, '0'), 'gate', 'turnstile',"
            " 'mfrc522' FROM generate_series(0, %s - 1) i",
            (SCHOOLS * 2,),
        )
        conn.execute("SELECT ensure_event_partitions(%s, %s)", (start, now + timedelta(days=1)))
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, card_key, kind, reader, result,"
            " reason, board_time, clock_synced, uptime_ms, occurred_at)"
            " SELECT 'ld' || (i %% %(d)s), 1, i / %(d)s + 1,"
            " 'ls' || lpad(((i %% %(d)s) / 2)::text, 3, '0'), '0123456789abcdef', 'tap', 'in',"
            " CASE WHEN i %% 17 = 0 THEN 'denied' ELSE 'granted' END, 'ok', t, true, 0, t"
            " FROM generate_series(0, %(n)s - 1) i,"
            " LATERAL (SELECT %(start)s::timestamptz"
            "   + (i::float8 / %(n)s * %(days)s) * interval '1 day' AS t) x",
            {"d": SCHOOLS * 2, "n": EVENTS, "days": DAYS, "start": start},
        )
        conn.execute(
            "INSERT INTO people (school_id, kind, full_name)"
            " SELECT 'ls000', 'student', 'Pupil ' || i FROM generate_series(1, %s) i",
            (PUPILS,),
        )
        day = conn.execute("SELECT (now() AT TIME ZONE 'Asia/Almaty')::date").fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO attendance (person_id, day, school_id, first_in, last_out, passages)"
            " SELECT id, %(day)s, 'ls000',"
            " (%(day)s + time '07:30' + (id %% 100) * interval '1 min') AT TIME ZONE 'Asia/Almaty',"
            " NULL, 1"
            " FROM people WHERE school_id = 'ls000' ORDER BY id LIMIT 4700",
            {"day": day},
        )
        conn.execute(
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id, meal_category,"
            " occurred_at, day) SELECT 'ld0', 2, row_number() OVER (), 'ls000', id,"
            " 1 + (id %% 3)::int, now(), %s FROM people WHERE school_id = 'ls000' LIMIT 3000",
            (day,),
        )
        tokens = {}
        for role, scope in (("school_admin", ("school_id", "ls000")),
                            ("district_authority", ("district_id", district))):  # fmt: skip
            uid = conn.execute(
                f"INSERT INTO users (email, password_hash, role, {scope[0]})"
                " VALUES (%s, 'x', %s, %s) RETURNING id",
                (f"{role}@bench.test", role, scope[1]),
            ).fetchone()[0]  # type: ignore[index]
            token = secrets.token_urlsafe(32)
            conn.execute(
                "INSERT INTO sessions (token_hash, user_id, expires_at)"
                " VALUES (%s, %s, now() + interval '1 day')",
                (hashlib.sha256(token.encode()).digest(), uid),
            )
            tokens[role] = token
    return tokens


Call = tuple[str, dict[str, str], dict[str, str]]


def _times(client: TestClient, calls: list[Call]) -> list[float]:
    """ms of each round of ``calls`` (path, params, headers): one page, or the API calls that
    fetch its data, one after the other."""
    out = []
    for i in range(3 + REQUESTS):
        t0 = time.perf_counter()
        for path, params, headers in calls:
            r = client.get(path, params=params, headers=headers)
            if r.status_code != 200:
                raise AssertionError(f"{path}: {r.status_code} {r.text[:200]}")
        if i >= 3:
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def _p95(xs: list[float]) -> float:
    return float(statistics.quantiles(xs, n=20)[-1])


def run(repeat: int = 3) -> list[Row]:
    with database(0) as url:
        t0 = time.perf_counter()
        tokens = _populate(url)
        print(f"{EVENTS:,} events in {time.perf_counter() - t0:.0f} s", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        since = (datetime.now(UTC) - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%SZ")
        since_local = (datetime.now(UTC) + timedelta(hours=5) - timedelta(hours=24))
        form_since = since_local.strftime("%Y-%m-%dT%H:%M")
        # no rate limits: this measures server time, and the API calls come back to back
        app = create_app(Settings(database_url=url, auth_required=True, api_rate_client="",
                                  api_rate_account=""))
        rows: list[Row] = []
        with TestClient(app, base_url="https://testserver") as c:
            def page(role: str) -> dict[str, str]:
                return {"Cookie": f"qadam_session={tokens[role]}", "Accept-Language": "ru"}

            def api(role: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {tokens[role]}"}

            cases: list[tuple[str, Any, Any]] = [
                ("Today, school of 5,000 pupils",
                 [("/today", {}, page("school_admin"))],
                 [("/api/v1/devices", {"school": "ls000"}, api("school_admin")),
                  ("/api/v1/people", {"school": "ls000", "kind": "student", "limit": "1"},
                   api("school_admin"))]),
                ("Today, district of 200 schools (one row each)",
                 [("/today", {}, page("district_authority"))],
                 [("/api/v1/schools", {"limit": "200"}, api("district_authority"))]),
                ("Live events, school admin, last 24 h",
                 [("/live", {"since": form_since}, page("school_admin"))],
                 [("/api/v1/events", {"since": since, "limit": "50"}, api("school_admin"))]),
                ("Live events, district of 200 schools, last 24 h",
                 [("/live", {"since": form_since}, page("district_authority"))],
                 [("/api/v1/events", {"since": since, "limit": "50"},
                   api("district_authority"))]),
            ]  # fmt: skip
            for label, page_calls, api_calls in cases:
                pages: list[float] = []
                apis: list[float] = []
                for _ in range(repeat):
                    pages += _times(c, page_calls)
                    apis += _times(c, api_calls)
                rows.append(Row(f"{label}: page p95, ms", round(_p95(pages), 1), "ms",
                                baseline=round(_p95(apis), 1), goal=GOAL))
                rows.append(Row(f"{label}: page median, ms", round(statistics.median(pages), 1),
                                "ms", baseline=round(statistics.median(apis), 1),
                                goal="baseline: the API calls for the same data"))
                print(f"{label} done", flush=True)
    return rows
