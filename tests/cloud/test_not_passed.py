"""A turnstile's not_passed (issue #13 item 8): a grant nobody walked through is no passage.

The not_passed event itself never counts, and it withdraws its tap's passage (migration 0017):
attendance (and so the reports' presence) and parent notices use only taps that mean a person
passed, whichever order the two events arrive in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from cloud_helpers import T0, Seed, dumps, event, topic

from cloud.domain import registry
from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import write
from cloud.push.handlers import ParentNotificationHandler
from cloud.push.message import RecordingPushService
from cloud.reports.build import crosscheck
from cloud.workers.outbox import OutboxWorker

pytestmark = pytest.mark.usefixtures("write_path")  # both write paths (tests/cloud/conftest.py)


def _batch(events: list[dict[str, Any]], dev: str = "gate-1") -> Batch:
    got = decode(topic("qadam", dev), dumps({"v": 1, "dev": dev, "boot": 7, "events": events}))
    assert isinstance(got, Batch), got
    return got


def _tap(seq: int, reader: str = "in", **over: Any) -> dict[str, Any]:
    return event(seq, reader=reader, **over)


def _missed(seq: int, ref: int, reader: str = "in") -> dict[str, Any]:
    """The board's not_passed for the grant ``ref`` (protocol.md "Event reasons")."""
    return event(seq, reader=reader, kind="not_passed", reason="passage_timeout", ref=ref)


@pytest.fixture
def conn(database_url: str) -> Iterator[Any]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _attendance(conn: Any) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT person_id, first_in, last_out, passages FROM attendance ORDER BY day"
        ).fetchall()
    ]


def _pushed(database_url: str) -> list[str]:
    """The per-tap keys the outbox worker sends for what the ingest noted."""
    push = RecordingPushService()
    worker = OutboxWorker(database_url, [ParentNotificationHandler(push, max_age_s=10**10)],
                          batch=50, poll_s=0.02, lease_s=30)  # fmt: skip
    while worker.run_once():
        pass
    return sorted(m.idempotency_key for m in push.sent)


def _at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def test_a_grant_nobody_walked_through_is_no_passage_and_no_notice(
    conn: Any, database_url: str, seed: Seed
) -> None:
    write(conn, [_batch([_tap(1)])])  # the grant: counted while nobody knows better
    assert _attendance(conn) == [(seed.alice, _at(T0 + 1), None, 1)]
    write(conn, [_batch([_missed(2, ref=1)])])  # 5 s later: nobody passed
    assert _attendance(conn) == []  # no passage that day: not present
    assert _pushed(database_url) == []  # neither "arrived" for the grant nor for the not_passed


def test_withdrawn_passage_in_the_same_flush_keeps_the_others(
    conn: Any, database_url: str, seed: Seed
) -> None:
    write(conn, [_batch([_tap(1), _tap(3, "out"), _missed(4, ref=3, reader="out")])])
    assert _attendance(conn) == [(seed.alice, _at(T0 + 1), None, 1)]
    assert _pushed(database_url) == ["tap:gate-1:7:1"]
    with conn.cursor() as cur:
        assert cur.execute("SELECT seq, by_seq FROM passage_withdrawals").fetchall() == [(3, 4)]


def test_a_tap_arriving_after_its_not_passed_is_never_counted(
    conn: Any, database_url: str, seed: Seed
) -> None:
    # the tap's batch was lost by a broker and re-sent after the not_passed's (D2)
    write(conn, [_batch([_tap(2, t=T0 + 9)])])
    write(conn, [_batch([_missed(4, ref=3)])])
    write(conn, [_batch([_tap(3, t=T0 + 5)])])
    assert _attendance(conn) == [(seed.alice, _at(T0 + 9), None, 1)]
    assert _pushed(database_url) == ["tap:gate-1:7:2"]


def test_meal_without_a_real_passage_shows_in_the_cross_check(conn: Any, seed: Seed) -> None:
    registry.register_device(conn, "canteen-1", "s1", "canteen", "canteen", "pn532")
    write(conn, [_batch([_tap(1), _missed(2, ref=1)])])
    write(conn, [_batch([_tap(1, "canteen", t=T0 + 3600)], dev="canteen-1")])
    report = crosscheck(conn, "s1", date(2025, 10, 1))
    assert [(r["person_id"], r["date"]) for r in report["fed_not_present"]] == [
        (seed.alice, "2025-10-09")
    ]


def test_not_passed_stays_in_events_with_its_ref(conn: Any, seed: Seed) -> None:
    b = _batch([_tap(1), _missed(2, ref=1)])
    assert b.events[1].ref == 1 and b.events[0].ref is None
    write(conn, [b])
    kinds = conn.execute("SELECT seq, kind FROM events ORDER BY seq").fetchall()
    assert kinds == [(1, "tap"), (2, "not_passed")]
