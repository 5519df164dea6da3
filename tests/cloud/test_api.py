"""HTTP API: /api/v1/events filters, pagination and validation; /healthz; the live page."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cloud_helpers import CARD_B, T0, Seed, batch_doc, dumps, event_ids, events_page, topic
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import write
from cloud.settings import Settings


def _store(url: str, *docs: dict[str, Any]) -> None:
    batches = []
    for doc in docs:
        b = decode(topic("qadam", doc["dev"]), dumps(doc))
        assert isinstance(b, Batch), b
        batches.append(b)
    with psycopg.connect(url, autocommit=True) as conn:
        write(conn, batches)


@pytest.fixture
def client(database_url: str, seed: Seed, admin_headers: dict[str, str]) -> Iterator[TestClient]:
    # gate-1 (school s1): boot 7 seq 1..5 by Alice at T0+1..T0+5; boot 8 seq 1..2 unknown card
    # gate-2 (school s2): boot 1 seq 1..3 by Bob at T0+1..T0+3
    _store(
        database_url,
        batch_doc(seqs=range(1, 6)),
        batch_doc(boot=8, seqs=[1, 2], card="00000000000000aa", t=T0 + 100),
        batch_doc(dev="gate-2", boot=1, seqs=range(1, 4), card=CARD_B, reader="canteen"),
    )
    s = Settings(database_url=database_url)
    with TestClient(create_app(s), headers=admin_headers) as c:
        yield c


def test_lists_all_newest_first(client: TestClient, seed: Seed) -> None:
    body = events_page(client)
    assert body["total"] == 10 and body["limit"] == 100 and body["offset"] == 0
    assert event_ids(body)[:2] == [("gate-1", 8, 2), ("gate-1", 8, 1)]  # t = T0+100
    times = [i["occurred_at"] for i in body["items"]]
    assert times == sorted(times, reverse=True)
    first_alice = next(i for i in body["items"] if i["person"] == seed.alice)
    assert first_alice["person_name"] == "Alice Aliyeva"
    assert first_alice["school"] == "s1" and first_alice["card_key"] == "0123456789abcdef"
    assert first_alice["reader"] == "in" and first_alice["result"] == "granted"
    assert first_alice["reason"] == "ok" and first_alice["clock_synced"] is True
    assert first_alice["received_at"]
    unknown = body["items"][0]
    assert unknown["person"] is None and unknown["person_name"] is None


def test_order_is_time_desc_then_seq_desc(client: TestClient) -> None:
    body = events_page(
        client, device="gate-1", since="2025-10-09T08:53:20Z", until="2025-10-09T09:00:00Z"
    )
    # boot 8 seq 1 and 2 share one time (T0+100): the tie is broken by seq, descending
    assert event_ids(body) == [("gate-1", 8, 2), ("gate-1", 8, 1)] + [
        ("gate-1", 7, s) for s in (5, 4, 3, 2, 1)
    ]


@pytest.mark.parametrize(
    ("params", "expected_total"),
    [
        ({"school": "s1"}, 7),
        ({"school": "s2"}, 3),
        ({"school": "nope"}, 0),
        ({"device": "gate-2"}, 3),
        ({"device": "gate-1", "school": "s2"}, 0),
        ({"since": "2025-10-09T08:53:23Z"}, 6),  # T0+3 incl.: gate-1 3,4,5 + boot 8 x2 + gate-2 3
        ({"until": "2025-10-09T08:53:23Z"}, 4),  # exclusive: gate-1 seq 1,2 and gate-2 seq 1,2
        ({"since": "2025-10-09T08:53:22", "until": "2025-10-09T08:53:24+00:00"}, 4),  # naive=UTC
        ({"since": "2025-10-09T13:53:22+05:00", "until": "2025-10-09T13:53:23+05:00"}, 2),
    ],
)
def test_filters(client: TestClient, params: dict[str, Any], expected_total: int) -> None:
    body = events_page(client, **params)
    assert body["total"] == expected_total
    assert len(body["items"]) == expected_total


def test_person_filter(client: TestClient, seed: Seed) -> None:
    body = events_page(client, person=seed.bob)
    assert body["total"] == 3
    assert {i["person_name"] for i in body["items"]} == {"Bob Bekov"}
    assert events_page(client, person=seed.alice)["total"] == 5
    assert events_page(client, person=999999)["total"] == 0


def test_pagination(client: TestClient) -> None:
    all_ids = event_ids(events_page(client, limit=1000))
    pages = [events_page(client, limit=3, offset=o) for o in range(0, 12, 3)]
    assert [p["total"] for p in pages] == [10] * 4
    assert [len(p["items"]) for p in pages] == [3, 3, 3, 1]
    assert [x for p in pages for x in event_ids(p)] == all_ids
    assert events_page(client, offset=50)["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"person": "alice"}, "person"),
        ({"person": 0}, "person"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-01T00:00:00Z"}, "until"),
        ({"since": "2025-10-10T00:00:00Z", "until": "2025-10-09T00:00:00Z"}, "since"),
        ({"school": ""}, "school"),
    ],
)
def test_bad_params_are_422(client: TestClient, params: dict[str, Any], field: str) -> None:
    r = client.get("/api/v1/events", params=params)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(d["loc"] == ["query", field] and d["msg"] for d in detail), detail


def test_healthz_ok(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_healthz_503_when_database_is_down() -> None:
    s = Settings(database_url="postgresql://postgres@127.0.0.1:1/qadam")
    with TestClient(create_app(s)) as c:
        r = c.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "error"


@pytest.mark.parametrize("path", ["/", "/live"])
def test_live_page_is_behind_sign_in(client: TestClient, path: str) -> None:
    """The public live page is gone: the console's live events need a session (issue #15;
    tests/console)."""
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
