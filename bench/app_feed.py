"""app_feed: server time of the parents' app's feed (issue #16, D27-F) against the API call that
fetches the same data (``GET /api/v1/events?person=&limit=20``), in the same run and database.

One throwaway database: the bench school with 1,000 pupils and 500,000 taps over the last 30
days (server-side generate_series, then vacuumed); a guardian of two of its pupils, each with
~500 of those taps. Each request goes through the whole app in-process (TestClient: routing,
session lookup, scope, query, template rendering), 3 warm-up and N timed requests per case:
the first page of a child, and a page deep in the history by the keyset cursor. The console's
bench helpers (bench/console.py) do the timing."""

from __future__ import annotations

import hashlib
import secrets
import statistics
import time

import psycopg
from fastapi.testclient import TestClient

from bench.common import Row, database
from bench.console import _p95, _times
from cloud.api.app import create_app
from cloud.settings import Settings

PUPILS = 1_000
EVENTS = 500_000
DAYS = 30


def _populate(url: str) -> tuple[str, int]:
    """The guardian's session token and their first child's id."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO people (school_id, kind, full_name)"
            " SELECT 'b1', 'student', 'Pupil ' || i FROM generate_series(1, %s) i",
            (PUPILS,),
        )
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM people WHERE school_id = 'b1' ORDER BY id LIMIT %s", (PUPILS,)
        ).fetchall()]  # fmt: skip
        conn.execute(f"SELECT ensure_event_partitions(now() - interval '{DAYS + 1} days', now())")
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
            " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at)"
            " SELECT 'bf-gate', 1, i, 'b1', (%s::bigint[])[1 + i %% %s], '0123456789abcdef',"
            " 'tap', (ARRAY['in', 'out', 'canteen'])[1 + (i / 7) %% 3], 'granted', 'ok',"
            " now() - i * (%s * interval '1 day' / %s), true, 0,"
            " now() - i * (%s * interval '1 day' / %s)"
            " FROM generate_series(1, %s) i",
            (ids, len(ids), DAYS, EVENTS, DAYS, EVENTS, EVENTS),
        )
        gid = conn.execute(
            "INSERT INTO users (email, password_hash, role, locale)"
            " VALUES ('mum@bench.test', 'x', 'guardian', 'kk') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        for child in ids[:2]:
            conn.execute("INSERT INTO guardian_students (guardian_id, person_id)"
                         " VALUES (%s, %s)", (gid, child))  # fmt: skip
        token = secrets.token_urlsafe(32)
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at)"
            " VALUES (%s, %s, now() + interval '1 day')",
            (hashlib.sha256(token.encode()).digest(), gid),
        )
    return token, ids[0]


def run(repeat: int = 3) -> list[Row]:
    with database(0) as url:
        t0 = time.perf_counter()
        token, child = _populate(url)
        print(f"{EVENTS:,} events in {time.perf_counter() - t0:.0f} s", flush=True)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        app = create_app(Settings(database_url=url, auth_required=True, api_rate_client="",
                                  api_rate_account=""))  # fmt: skip
        page = {"Cookie": f"qadam_session={token}"}
        api = {"Authorization": f"Bearer {token}"}
        rows: list[Row] = []
        with TestClient(app, base_url="https://testserver") as c:
            # a cursor 10 pages deep: follow the API's own next_cursor
            cursor = None
            for _ in range(10):
                params = {"person": str(child), "limit": "20"}
                if cursor:
                    params["cursor"] = cursor
                cursor = c.get("/api/v1/events", params=params, headers=api).json()["next_cursor"]
            assert cursor, "fewer than 11 pages of taps"
            older = c.get("/app/kk/", params={"child": str(child), "cursor": cursor},
                          headers=page)  # fmt: skip
            assert older.status_code == 200 and older.text.count("<li class=") == 20
            cases = [
                ("feed, first page", {"child": str(child)},
                 {"person": str(child), "limit": "20"}),
                ("feed, 11th page (keyset cursor)", {"child": str(child), "cursor": cursor},
                 {"person": str(child), "limit": "20", "cursor": cursor}),
            ]  # fmt: skip
            for label, page_params, api_params in cases:
                pages: list[float] = []
                apis: list[float] = []
                for _ in range(repeat):
                    pages += _times(c, [("/app/kk/", page_params, page)])
                    apis += _times(c, [("/api/v1/events", api_params, api)])
                rows.append(Row(f"{label}: page p95, ms", round(_p95(pages), 1), "ms",
                                baseline=round(_p95(apis), 1),
                                goal="baseline: GET /api/v1/events for the same 20"))  # fmt: skip
                rows.append(Row(f"{label}: page median, ms", round(statistics.median(pages), 1),
                                "ms", baseline=round(statistics.median(apis), 1)))  # fmt: skip
    return rows
