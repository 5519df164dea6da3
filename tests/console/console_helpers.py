"""Helpers of the console tests (importable: tests/console is on sys.path)."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

# What Chromium sends with a form posted from one of the console's own pages.
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin", "Origin": "https://testserver"}


def sign_in(client: TestClient, email: str, password: str, lang: str = "en") -> Any:
    return client.post(
        "/login",
        data={"email": email, "password": password, "next": "/"},
        headers={**SAME_ORIGIN, "Accept-Language": lang},
        follow_redirects=False,
    )


def populate_today(database_url: str, ids: dict[str, Any]) -> None:
    """Today's taps, attendance and a meal for api_world's schools (its own events are of
    2025), and gate-2 online, so the pages have something of today to show."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        day = conn.execute("SELECT (now() AT TIME ZONE 'Asia/Almaty')::date").fetchone()
        assert day is not None
        rows = [
            ("gate-1", 101, "s1", ids["alice"], "0123456789abcdef", "granted", "ok", 50),
            ("gate-1", 102, "s1", ids["amir"], "1111111111111111", "granted", "ok", 40),
            ("gate-1", 103, "s1", None, "9999999999999999", "denied", "unknown_card", 30),
            ("gate-2", 101, "s2", ids["bob"], "fedcba9876543210", "granted", "ok", 20),
            ("gate-3", 101, "s3", ids["cara"], "2222222222222222", "granted", "ok", 10),
        ]
        for device, seq, school, person, card, result, reason, minutes_ago in rows:
            conn.execute(
                "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
                " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at)"
                " VALUES (%s, 1, %s, %s, %s, %s, 'tap', 'in', %s, %s,"
                " now() - make_interval(mins => %s), true, 1000,"
                " now() - make_interval(mins => %s))",
                (device, seq, school, person, card, result, reason, minutes_ago, minutes_ago),
            )
        conn.execute(
            "INSERT INTO attendance (person_id, day, school_id, first_in, last_out, passages)"
            " VALUES (%s, %s, 's1', (%s + time '08:10') AT TIME ZONE 'Asia/Almaty', NULL, 1),"
            " (%s, %s, 's1', (%s + time '08:47') AT TIME ZONE 'Asia/Almaty', NULL, 1)",
            (ids["alice"], day[0], day[0], ids["amir"], day[0], day[0]),
        )
        conn.execute(
            "INSERT INTO meal_receipts (device_id, boot, seq, school_id, person_id,"
            " meal_category, occurred_at, day) VALUES ('gate-1', 1, 900, 's1', %s, 1, now(), %s)",
            (ids["alice"], day[0]),
        )
        conn.execute(
            "INSERT INTO device_status (device_id, status, online, last_seen)"
            " VALUES ('gate-2', '{}', true, now())"
        )
        conn.execute(
            "INSERT INTO device_status (device_id, status, online, last_seen)"
            " VALUES ('gate-1', '{}', false, now() - interval '3 hours')"
        )
