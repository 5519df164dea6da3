"""The outbox worker: SKIP LOCKED claims, backoff with jitter, dead letters, leases, fencing,
the push handler interface."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from cloud_helpers import CARD_A, Seed, batch_doc, dumps, topic

from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import write
from cloud.outbox.contract import BaseHandler, Delivered, Fail, OutboxItem, Retry
from cloud.push.handlers import ParentNotificationHandler
from cloud.push.message import RecordingPushService
from cloud.settings import Settings
from cloud.workers.outbox import OutboxWorker, backoff_s, build_handlers, requeue_dead

# The taps here are from 2025 (cloud_helpers.T0): old enough to be summarised instead of pushed
# one by one (push_max_age_s, docs/push.md); these tests are about the runs, so they are news.
OLD_OK = 10**10


class Recorder(BaseHandler):
    """Counts deliveries per key; ``script`` maps a key to outcomes to return in turn."""

    def __init__(self, kind: str = "test", delay: float = 0.0,
                 script: dict[str, list[Any]] | None = None) -> None:  # fmt: skip
        self.kind = kind
        self.delay = delay
        self.script = script or {}
        self.seen: Counter[str] = Counter()
        self.keys_by_thread: dict[str, set[str]] = {}
        self.records: list[tuple[str, str, bool]] = []
        self.lock = threading.Lock()

    def deliver(self, item: OutboxItem) -> Any:
        with self.lock:
            self.seen[item.idempotency_key] += 1
            name = threading.current_thread().name
            self.keys_by_thread.setdefault(name, set()).add(item.idempotency_key)
            todo = self.script.get(item.idempotency_key)
            outcome = todo.pop(0) if todo else Delivered()
        if self.delay:
            time.sleep(self.delay)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def record(self, conn: Any, item: OutboxItem, outcome: Any, dead: bool) -> None:
        with self.lock:
            self.records.append((item.idempotency_key, type(outcome).__name__, dead))


def _enqueue(url: str, n: int, kind: str = "test") -> list[str]:
    keys = [f"{kind}:{i}" for i in range(n)]
    with psycopg.connect(url) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO outbox (kind, idempotency_key, payload) VALUES (%s, %s, %s)",
                [(kind, k, json.dumps({"i": i})) for i, k in enumerate(keys)],
            )
    return keys


def _rows(url: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, attempts, delivered_at, dead_at, last_error,"
            " next_attempt_at - last_attempt_at FROM outbox"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def _worker(url: str, handlers: Sequence[Any], **kw: Any) -> OutboxWorker:
    opts: dict[str, Any] = dict(batch=10, poll_s=0.02, lease_s=30, max_attempts=5,
                                backoff_base_s=0.01, backoff_max_s=0.05)  # fmt: skip
    opts.update(kw)
    return OutboxWorker(url, handlers, **opts)


def _run_until_sent(url: str, handlers: Sequence[Any], push: RecordingPushService, n: int) -> None:
    """Run a worker until ``push`` has ``n`` messages (or 10 s pass), then stop it."""
    w = _worker(url, handlers)
    w.start()
    try:
        deadline = time.monotonic() + 10
        while len(push.sent) < n and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        w.stop()


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(1)
    for attempts, full in ((1, 2.0), (2, 4.0), (3, 8.0), (5, 32.0), (12, 60.0), (500, 60.0)):
        values = [backoff_s(attempts, 2.0, 60.0, rng) for _ in range(200)]
        assert all(full / 2 <= v <= full for v in values), (attempts, min(values), max(values))
        assert max(values) - min(values) > full / 4  # really jittered


def test_two_workers_deliver_every_row_exactly_once(database_url: str) -> None:
    keys = _enqueue(database_url, 300)
    h = Recorder(delay=0.002)
    workers = [_worker(database_url, [h], worker_id=f"w{i}") for i in range(2)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + 30
    while sum(h.seen.values()) < len(keys) and time.monotonic() < deadline:
        time.sleep(0.02)
    for w in workers:
        w.stop()
    assert set(h.seen) == set(keys) and set(h.seen.values()) == {1}  # SKIP LOCKED: no overlap
    assert len(h.keys_by_thread) == 2 and all(len(v) > 20 for v in h.keys_by_thread.values())
    rows = _rows(database_url)
    assert all(r[0] == 1 and r[1] is not None and r[2] is None for r in rows.values())


def test_retry_with_backoff_then_dead_letter_after_n_attempts(database_url: str) -> None:
    _enqueue(database_url, 2)
    h = Recorder(script={"test:0": [Retry("HTTP 500")] * 10,
                         "test:1": [Retry("HTTP 503"), Delivered()]})  # fmt: skip
    w = _worker(database_url, [h], max_attempts=4, backoff_base_s=0.2, backoff_max_s=10)
    assert w.run_once() == 2
    rows = _rows(database_url)
    assert rows["test:0"][0] == 1 and rows["test:0"][3] == "HTTP 500"
    gap = rows["test:0"][4].total_seconds()
    assert 0.1 <= gap <= 0.2 + 0.15, gap  # attempt 1: [base/2, base]
    assert w.run_once() == 0  # not due yet
    deadline = time.monotonic() + 20
    while _rows(database_url)["test:0"][2] is None and time.monotonic() < deadline:
        w.run_once()
        time.sleep(0.05)
    rows = _rows(database_url)
    attempts, delivered, dead, err, _ = rows["test:0"]
    assert (attempts, delivered, err) == (4, None, "HTTP 500") and dead is not None
    assert h.seen["test:0"] == 4
    assert rows["test:1"][0] == 2 and rows["test:1"][1] is not None
    assert ("test:0", "Retry", True) in h.records and ("test:0", "Retry", False) in h.records
    # a dead letter is never claimed again ...
    time.sleep(0.3)
    assert w.run_once() == 0
    # ... until an operator requeues it
    with psycopg.connect(database_url) as conn:
        assert requeue_dead(conn, "test") == 1
    h.script["test:0"] = []
    assert w.run_once() == 1
    assert _rows(database_url)["test:0"][1] is not None


def test_permanent_failure_and_handler_exceptions(database_url: str) -> None:
    _enqueue(database_url, 2)
    h = Recorder(script={"test:0": [Fail("bad payload")], "test:1": [RuntimeError("bug")]})
    w = _worker(database_url, [h])
    assert w.run_once() == 2
    rows = _rows(database_url)
    assert rows["test:0"][2] is not None and rows["test:0"][3] == "bad payload"  # dead at once
    assert rows["test:1"][2] is None and rows["test:1"][3] == "RuntimeError: bug"  # retried


def test_a_dead_worker_s_rows_come_back_after_the_lease(database_url: str) -> None:
    _enqueue(database_url, 3)
    h = Recorder()
    crashed = _worker(database_url, [h], lease_s=0.5)
    claimed = crashed.claim()  # ... and then the process dies
    assert len(claimed) == 3
    other = _worker(database_url, [h])
    assert other.run_once() == 0  # leased
    time.sleep(0.6)
    reclaimed = other.claim()
    assert [i.attempts for i in reclaimed] == [2, 2, 2]
    # fencing: the crashed worker's late failure does not touch rows re-claimed since
    crashed._store(claimed[0], Retry("late"))
    row = _rows(database_url)[claimed[0].idempotency_key]
    assert row[3] is None and row[4].total_seconds() == pytest.approx(30, abs=1)
    for item in reclaimed:
        other._store(item, h.deliver(item))
    rows = _rows(database_url)
    assert all(r[0] == 2 and r[1] is not None for r in rows.values())


def test_rows_claimed_too_often_become_dead_without_another_send(database_url: str) -> None:
    _enqueue(database_url, 1)
    h = Recorder()
    for _ in range(3):  # three workers died holding it
        _worker(database_url, [h], lease_s=0.01).claim()
        time.sleep(0.02)
    w = _worker(database_url, [h], max_attempts=3)
    assert w.run_once() == 1
    assert h.seen["test:0"] == 0
    assert _rows(database_url)["test:0"][2] is not None


def test_unknown_kinds_are_left_for_workers_that_handle_them(database_url: str) -> None:
    _enqueue(database_url, 2, kind="other")
    _enqueue(database_url, 1)
    h = Recorder()
    w = _worker(database_url, [h])
    assert w.run_once() == 1
    rows = _rows(database_url)
    assert rows["other:0"][0] == 0 and rows["other:0"][1] is None
    with pytest.raises(ValueError):
        OutboxWorker(database_url, [])
    with pytest.raises(ValueError):
        OutboxWorker(database_url, [Recorder(), Recorder()])


def test_parent_notifications_go_to_the_push_service_with_their_key(
    database_url: str, seed: Seed
) -> None:
    doc = batch_doc(seqs=range(1, 4), card=CARD_A)
    doc["events"][2]["result"] = "denied"
    b = decode(topic("qadam", "gate-1"), dumps(doc))
    assert isinstance(b, Batch)
    with psycopg.connect(database_url, autocommit=True) as conn:
        write(conn, [b])
    push = RecordingPushService(fail_first=1)
    _run_until_sent(database_url, [ParentNotificationHandler(push, max_age_s=OLD_OK)], push, 2)
    assert sorted(m.idempotency_key for m in push.sent) == ["tap:gate-1:7:1", "tap:gate-1:7:2"]
    assert {m.person_id for m in push.sent} == {seed.alice}
    assert {m.reader for m in push.sent} == {"in"}
    assert push.calls == 3  # one failure, retried
    rows = _rows(database_url)
    assert sorted(k for k, r in rows.items() if r[1] is not None) == ["taps:gate-1:7:1"]


def test_a_note_names_its_taps_as_ranges_and_rows_that_list_them_still_deliver(
    database_url: str, seed: Seed
) -> None:
    doc = batch_doc(seqs=range(1, 11), card=CARD_A)
    for i in (2, 6):  # seqs 3 and 7 denied
        doc["events"][i]["result"] = "denied"
    doc["events"][4]["card"] = "aaaaaaaaaaaaaaaa"  # seq 5: nobody's card, no note
    b = decode(topic("qadam", "gate-1"), dumps(doc))
    assert isinstance(b, Batch)
    with psycopg.connect(database_url, autocommit=True) as conn:
        write(conn, [b])
        notes = conn.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
        assert [n[0]["runs"] for n in notes] == [[[1, 2], [4, 4], [6, 6], [8, 10]]]
        assert all("seqs" not in n[0] for n in notes)
        # a row as D18 wrote it, listing its seqs (unsorted here), for taps of another boot
        b8 = decode(topic("qadam", "gate-1"), dumps(batch_doc(boot=8, seqs=range(1, 5),
                                                              card=CARD_A)))  # fmt: skip
        assert isinstance(b8, Batch)
        write(conn, [b8])
        conn.execute("DELETE FROM outbox WHERE idempotency_key = 'taps:gate-1:8:1'")
        conn.execute(
            "INSERT INTO outbox (kind, idempotency_key, payload) VALUES"
            " ('parent_notification', 'taps:gate-1:8:1', %s)",
            (
                json.dumps(
                    {"school_id": "s1", "device_id": "gate-1", "boot": 8, "seqs": [4, 1, 2]}
                ),
            ),  # fmt: skip
        )
    push = RecordingPushService()
    _run_until_sent(database_url, [ParentNotificationHandler(push, max_age_s=OLD_OK)], push, 10)
    assert sorted(m.idempotency_key for m in push.sent) == sorted(
        [f"tap:gate-1:7:{s}" for s in (1, 2, 4, 6, 8, 9, 10)]
        + [f"tap:gate-1:8:{s}" for s in (1, 2, 4)]
    )
    assert {m.person_id for m in push.sent} == {seed.alice}
    assert all(r[1] is not None for r in _rows(database_url).values())  # delivered


def test_worker_survives_a_database_outage(database_url: str) -> None:
    _enqueue(database_url, 1)
    h = Recorder()
    w = _worker(database_url.rsplit("/", 1)[0] + "/qadam_no_such_db", [h])
    w.start()
    time.sleep(0.3)
    assert w._thread is not None and w._thread.is_alive()  # retrying, not dead
    w.stop()
    w.database_url = database_url
    w.start()
    deadline = time.monotonic() + 10
    while not h.seen and time.monotonic() < deadline:
        time.sleep(0.02)
    w.stop()
    assert h.seen == Counter({"test:0": 1})


def test_low_balance_and_report_reminders_reach_the_push_service(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO outbox (kind, idempotency_key, payload) VALUES"
            " ('low_balance', 'low_balance:1:2026-11-28', %s),"
            " ('report_reminder', 'report_reminder:s1:2026-10', %s)",
            (
                json.dumps({"person_id": 1, "school_id": "s1", "balance": "120.00"}),
                json.dumps({"school_id": "s1", "month": "2026-10"}),
            ),
        )
    push = RecordingPushService()
    handlers = build_handlers(Settings(database_url=database_url), push)
    _run_until_sent(database_url, handlers, push, 2)
    sent = {m.kind: m for m in push.sent}
    assert set(sent) == {"low_balance", "report_reminder"}
    assert sent["low_balance"].person_id == 1 and sent["low_balance"].payload == {
        "person_id": 1, "school_id": "s1", "balance": "120.00"}  # fmt: skip
    assert sent["report_reminder"].school_id == "s1"
    assert all(r[1] is not None for r in _rows(database_url).values())  # delivered


def test_a_run_of_taps_not_read_at_claim_time_is_never_marked_delivered() -> None:
    from datetime import UTC, datetime

    push = RecordingPushService()
    h = ParentNotificationHandler(push)
    item = OutboxItem(1, "parent_notification", "taps:gate-1:7:1",
                      {"device_id": "gate-1", "boot": 7, "school_id": "s1", "seqs": [1, 2]}, 1,
                      datetime.now(UTC))  # fmt: skip
    outcome = h.deliver(item)
    assert isinstance(outcome, Retry) and push.sent == []


def test_handlers_import_the_contract_not_the_runner():
    # issue #18 "Also": the runner imports the handlers; a handler importing the runner back
    # would be a cycle (and two copies of the outcome classes under `python -m`)
    import subprocess
    import sys

    code = (
        "import sys, cloud.push.handlers, cloud.socialwallet.handler, cloud.mail.smtp;"
        " print('cloud.workers.outbox' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
