"""/api/v1/events across several schools (D23): each school's newest are merged, as there is no
index on time alone. The merged pages must equal one ORDER BY over all of ``events``."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from auth_tokens import make_admin_token
from cloud_helpers import Seed, event_ids, events_page
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.domain import registry
from cloud.settings import Settings

T0 = datetime(2025, 10, 9, 8, 0, tzinfo=UTC)
SCHOOLS = ["s1", "s2", "s3", "s4", "s5"]  # s5 has a device but no events
DEVICES = {"gate-1": "s1", "gate-2": "s2", "gate-3": "s3", "gate-3b": "s3", "gate-4": "s4",
           "gate-5": "s5"}  # fmt: skip


def _insert_events(url: str, rng: random.Random, n: int) -> None:
    """``n`` events over four schools, on few distinct times (many ties), two boots per device,
    some rows in last month's partition and some in the default one."""
    rows = []
    next_seq: dict[tuple[str, int], int] = {}
    for _ in range(n):
        dev = rng.choice(["gate-1", "gate-2", "gate-3", "gate-3b", "gate-4"])
        boot = rng.choice([1, 2])
        seq = next_seq[(dev, boot)] = next_seq.get((dev, boot), 0) + rng.choice([1, 1, 2])
        at = T0 + timedelta(minutes=rng.choice([0, 0, 1, 5, 60, -60 * 24 * 40, 60 * 24 * 900]))
        rows.append((dev, boot, seq, DEVICES[dev], at))
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT ensure_event_partitions(%s, %s)", (T0 - timedelta(days=60), T0))
        cur.executemany(
            "INSERT INTO events (device_id, boot, seq, school_id, card_key, kind, reader, result,"
            " reason, board_time, clock_synced, uptime_ms, occurred_at)"
            " VALUES (%s, %s, %s, %s, '0123456789abcdef', 'tap', 'in', 'granted', 'ok', %s,"
            " true, 0, %s)",
            [(d, b, s, sch, at, at) for d, b, s, sch, at in rows],
        )


@pytest.fixture
def client(database_url: str, seed: Seed) -> Iterator[TestClient]:
    with psycopg.connect(database_url) as conn:
        for school in SCHOOLS[2:]:
            registry.create_school(conn, school, f"School {school}", school.encode() * 16)
        for dev, school in DEVICES.items():
            if dev not in ("gate-1", "gate-2"):
                registry.register_device(conn, dev, school, "hall", "door", "mfrc522")
    _insert_events(database_url, random.Random(23), 400)
    headers = {"Authorization": f"Bearer {make_admin_token(database_url)}"}
    with TestClient(create_app(Settings(database_url=database_url)), headers=headers) as c:
        yield c


def _reference(url: str, where: str, params: tuple[Any, ...]) -> list[tuple[str, int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT device_id, boot, seq FROM events WHERE {where}"
            " ORDER BY occurred_at DESC, seq DESC, device_id, boot DESC",
            params,
        ).fetchall()
    return [(str(d), int(b), int(s)) for d, b, s in rows]


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_pages_across_schools_equal_one_ordered_scan(
    client: TestClient, database_url: str, limit: int
) -> None:
    expected = _reference(database_url, "TRUE", ())
    assert len(expected) == 400
    got: list[tuple[str, int, int]] = []
    for offset in range(0, len(expected) + limit, limit):
        body = events_page(client, limit=limit, offset=offset)
        assert body["total"] == 400
        got.extend(event_ids(body))
    assert got == expected
    schools = {i["school"] for i in events_page(client, limit=1000)["items"]}
    assert schools == {"s1", "s2", "s3", "s4"}


def test_time_window_across_schools(client: TestClient, database_url: str) -> None:
    since, until = T0, T0 + timedelta(minutes=5)  # until is exclusive: the +5 min rows are out
    expected = _reference(database_url, "occurred_at >= %s AND occurred_at < %s", (since, until))
    assert 0 < len(expected) < 400
    params = {"since": since.isoformat(), "until": until.isoformat()}
    first = events_page(client, limit=10, offset=0, **params)
    rest = events_page(client, limit=1000, offset=10, **params)
    assert first["total"] == rest["total"] == len(expected)
    assert event_ids(first) + event_ids(rest) == expected


def test_one_school_or_device_takes_its_own_index_and_order(
    client: TestClient, database_url: str
) -> None:
    for params, where, args in [
        ({"school": "s3"}, "school_id = %s", ("s3",)),
        ({"device": "gate-3b"}, "device_id = %s", ("gate-3b",)),
    ]:
        expected = _reference(database_url, where, args)
        assert expected
        body = events_page(client, limit=1000, **params)
        assert body["total"] == len(expected) and event_ids(body) == expected


def _walk(client: TestClient, limit: int, **params: Any) -> tuple[list[tuple[str, int, int]], int]:
    """All items by following next_cursor from the first page; and the number of pages."""
    body = events_page(client, limit=limit, **params)
    got, pages = event_ids(body), 1
    while body["next_cursor"] is not None:
        assert len(body["items"]) == limit
        body = events_page(client, limit=limit, cursor=body["next_cursor"], **params)
        got.extend(event_ids(body))
        pages += 1
        assert pages <= 500
    return got, pages


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_cursor_pages_equal_one_ordered_scan(
    client: TestClient, database_url: str, limit: int
) -> None:
    for params, where, args in [
        ({}, "TRUE", ()),  # across schools: merged from the cursor on
        ({"school": "s3"}, "school_id = %s", ("s3",)),
        ({"device": "gate-1"}, "device_id = %s", ("gate-1",)),
        ({"since": T0.isoformat()}, "occurred_at >= %s", (T0,)),
    ]:
        expected = _reference(database_url, where, args)
        got, pages = _walk(client, limit, **params)
        assert got == expected, params
        assert pages == len(expected) // limit + 1  # the last page is short or empty


def test_cursor_total_is_the_whole_list(client: TestClient) -> None:
    first = events_page(client, limit=10)
    second = events_page(client, limit=10, cursor=first["next_cursor"])
    assert first["total"] == second["total"] == 400
    assert not set(event_ids(first)) & set(event_ids(second))


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor!"},
        {"cursor": "bm9wZQ"},  # base64 of "nope"
        {"cursor": "MS4wLjEuZ2F0ZS0x"},  # seq 0
        {"cursor": "OTk5OTk5OTk5OTk5OTk5OTk5OTk5OS4xLjEuZ2F0ZS0x"},  # a time past year 9999
        {"cursor": "MS4xLjEuR0FURQ"},  # an upper-case device id
        {"cursor": "x" * 201},
        {"cursor": "MS4xLjEuZ2F0ZS0x", "offset": 10},  # cursor and offset
    ],
)
def test_bad_cursor_is_422(client: TestClient, params: dict[str, Any]) -> None:
    r = client.get("/api/v1/events", params=params)
    assert r.status_code == 422, r.text
    assert any(d["loc"] == ["query", "cursor"] for d in r.json()["detail"]), r.text
