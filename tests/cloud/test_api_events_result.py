"""``GET /api/v1/events?result=``: granted or denied taps only (the console's live page filters
through the same query, cloud/api/events.py ``events_in_scope``)."""

from __future__ import annotations

import psycopg
from api_world import build
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.settings import Settings


def test_result_filter(database_url: str, admin_headers: dict[str, str]) -> None:
    build(database_url)  # four granted taps
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, person_id, card_key, kind,"
            " reader, result, reason, board_time, clock_synced, uptime_ms, occurred_at) VALUES"
            " ('gate-1', 1, 9, 's1', NULL, '9999999999999999', 'tap', 'in', 'denied',"
            " 'unknown_card', now(), true, 1000, now())"
        )
    with TestClient(create_app(Settings(database_url=database_url))) as c:
        denied = c.get("/api/v1/events?result=denied", headers=admin_headers).json()
        granted = c.get("/api/v1/events?result=granted", headers=admin_headers).json()
        bad = c.get("/api/v1/events?result=maybe", headers=admin_headers)
    assert denied["total"] == 1 and denied["items"][0]["reason"] == "unknown_card"
    assert granted["total"] == 4 and {e["result"] for e in granted["items"]} == {"granted"}
    assert bad.status_code == 422


def test_the_console_filters_by_class_and_name(database_url: str) -> None:
    """``events_in_scope`` (the console's live page): a class's pupils, a name's part."""
    import psycopg

    from cloud.api.events import EventFilter, events_in_scope
    from cloud.auth.principal import Principal

    w = build(database_url)
    admin = Principal(user_id=w.users["platform_admin"], email="root@qadam.kz",
                      role="platform_admin")  # fmt: skip
    with psycopg.connect(database_url) as conn:
        of_class = EventFilter(class_id=w.ids["class_id"])
        total, items, _ = events_in_scope(conn, admin, of_class, None, 50)
        assert total == 1 and items[0].person_name == "Alice Aliyeva"
        total, items, _ = events_in_scope(conn, admin, EventFilter(name="BEK"), None, 50)
        assert total == 1 and items[0].person_name == "Bob Bekov"
        total, _, _ = events_in_scope(conn, admin, EventFilter(name="_"), None, 50)
        assert total == 0
