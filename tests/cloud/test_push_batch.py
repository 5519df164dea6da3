"""Web Push in batches (D28-N): the outbox hands a whole claim to the push service, which finds
recipients, settings and subscriptions with a query each, POSTs concurrently (bounded per push
service, one phone's messages in order) and stores the answers in one transaction. Each row
keeps its own outcome: one unreachable phone does not hold back, or re-send, the others."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from cloud_helpers import Seed
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fake_push import Browser, FakePushService
from psycopg.types.json import Jsonb

from cloud.push import preferences
from cloud.push.handlers import ParentNotificationHandler
from cloud.push.service import WebPushService
from cloud.push.webpush import VAPID_LIFETIME_S, VAPID_REFRESH_S, VapidKey
from cloud.workers.outbox import OutboxWorker


@pytest.fixture
def vapid() -> VapidKey:
    return VapidKey(VapidKey.generate_pem(), "mailto:ops@qadam.kz")


@pytest.fixture
def fake() -> Iterator[FakePushService]:
    with FakePushService() as svc:
        yield svc


def _guardian(conn: Any, school: str, name: str) -> tuple[int, int]:
    """A pupil of ``school`` and their guardian -> (person id, user id)."""
    person = conn.execute(
        "INSERT INTO people (school_id, kind, full_name) VALUES (%s, 'student', %s) RETURNING id",
        (school, name),
    ).fetchone()[0]
    user = conn.execute(
        "INSERT INTO users (email, password_hash, role) VALUES (%s, '!', 'guardian') RETURNING id",
        (f"{name.replace(' ', '.').lower()}@batch.kz",),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO guardian_students (guardian_id, person_id) VALUES (%s, %s)", (user, person)
    )
    return person, user


def _phone(conn: Any, user: int, endpoint: str, browser: Browser | None = None) -> int:
    """A subscription of ``user`` at ``endpoint`` (the browser's keys, or throwaway ones)."""
    key = browser.private_key if browser else ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth = browser.auth if browser else b"a" * 16
    return int(
        conn.execute(
            "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, lang)"
            " VALUES (%s, %s, %s, %s, 'en') RETURNING id",
            (user, endpoint, point, auth),
        ).fetchone()[0]
    )


def _tap_row(conn: Any, key: str, person: int, school: str, reader: str = "in") -> None:
    now = datetime.now(UTC).isoformat()
    payload = {"person_id": person, "school_id": school, "reader": reader, "occurred_at": now}
    conn.execute(
        "INSERT INTO outbox (kind, idempotency_key, payload)"
        " VALUES ('parent_notification', %s, %s)",
        (key, Jsonb(payload)),
    )


def _worker(url: str, service: WebPushService) -> OutboxWorker:
    return OutboxWorker(url, [ParentNotificationHandler(service)], batch=50, poll_s=0.02,
                        lease_s=30, max_attempts=5, backoff_base_s=0.01,
                        backoff_max_s=0.05)  # fmt: skip


def _rows(url: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, delivered_at IS NOT NULL, attempts, coalesce(last_error, '')"
            " FROM outbox WHERE kind = 'parent_notification'"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_one_failing_phone_is_retried_while_the_rest_of_the_batch_is_delivered(
    database_url: str, seed: Seed, vapid: VapidKey, fake: FakePushService
) -> None:
    browsers = []
    with psycopg.connect(database_url) as conn:
        for i in range(6):
            person, user = _guardian(conn, seed.school, f"Pupil {i}")
            b = fake.browser(vapid.application_server_key)
            _phone(conn, user, b.endpoint, b)
            _tap_row(conn, f"t{i}", person, seed.school)
            browsers.append(b)
    fake.fail[browsers[3].token] = 1  # one 503, then it answers
    service = WebPushService(database_url, vapid, timeout_s=5)
    try:
        worker = _worker(database_url, service)
        assert worker.run_once() == 6  # one claim, one batch
        rows = _rows(database_url)
        assert [k for k, r in sorted(rows.items()) if r[0]] == ["t0", "t1", "t2", "t4", "t5"]
        assert rows["t3"][:2] == (False, 1) and "503" in rows["t3"][2]
        with psycopg.connect(database_url) as conn:
            conn.execute("UPDATE outbox SET next_attempt_at = now() WHERE delivered_at IS NULL")
        assert worker.run_once() == 1
        assert _rows(database_url)["t3"][:2] == (True, 2)
    finally:
        service.close()
    assert fake.statuses(browsers[3].token) == [503, 201]
    for i, b in enumerate(browsers):
        if i != 3:
            assert fake.statuses(b.token) == [201]  # not sent again with the retry
        assert [m["name"] for m in b.received] == [f"Pupil {i}"]


def test_410_retires_only_that_subscription(
    database_url: str, seed: Seed, vapid: VapidKey, fake: FakePushService
) -> None:
    with psycopg.connect(database_url) as conn:
        person, user = _guardian(conn, seed.school, "Two Phones")
        old, new = (
            fake.browser(vapid.application_server_key),
            fake.browser(vapid.application_server_key),
        )
        old_id, new_id = (
            _phone(conn, user, old.endpoint, old),
            _phone(conn, user, new.endpoint, new),
        )
        other_person, other_user = _guardian(conn, seed.school, "Other Child")
        other = fake.browser(vapid.application_server_key)
        other_id = _phone(conn, other_user, other.endpoint, other)
        _tap_row(conn, "a1", person, seed.school)
        _tap_row(conn, "b1", other_person, seed.school)
    fake.gone.add(old.token)
    service = WebPushService(database_url, vapid, timeout_s=5)
    try:
        worker = _worker(database_url, service)
        worker.run_once()
        assert {k: r[0] for k, r in _rows(database_url).items()} == {"a1": True, "b1": True}
        with psycopg.connect(database_url) as conn:
            gone = dict(conn.execute("SELECT id, gone_at IS NOT NULL FROM push_subscriptions"))
            _tap_row(conn, "a2", person, seed.school, reader="out")
        assert gone == {old_id: True, new_id: False, other_id: False}
        worker.run_once()
    finally:
        service.close()
    assert fake.statuses(old.token) == [410]  # never asked again
    assert [m["reader"] for m in new.received] == ["in", "out"]
    assert len(other.received) == 1


class _SlowPushService:
    """A push service that answers 201 after ``delay_s`` and counts the POSTs in flight."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.inflight = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.shared: _SlowPushService | None = None  # also counted in another's totals
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer._enter()
                time.sleep(outer.delay_s)
                outer._leave()
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _enter(self) -> None:
        for s in (self, self.shared):
            if s is not None:
                with s.lock:
                    s.inflight += 1
                    s.peak = max(s.peak, s.inflight)

    def _leave(self) -> None:
        for s in (self, self.shared):
            if s is not None:
                with s.lock:
                    s.inflight -= 1

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_posts_run_concurrently_but_at_most_per_origin_at_once_to_one_push_service(
    database_url: str, seed: Seed, vapid: VapidKey
) -> None:
    both = _SlowPushService(0.0)  # only counts: the sum over the two services below
    services = [_SlowPushService(0.3), _SlowPushService(0.3)]
    for s in services:
        s.shared = both
    try:
        with psycopg.connect(database_url) as conn:
            for i in range(12):
                person, user = _guardian(conn, seed.school, f"Slow {i}")
                _phone(conn, user, f"{services[i % 2].origin}/push/{i}")
                _tap_row(conn, f"s{i}", person, seed.school)
        push = WebPushService(database_url, vapid, timeout_s=10, concurrency=8, per_origin=2)
        try:
            assert _worker(database_url, push).run_once() == 12
        finally:
            push.close()
        assert all(r[0] for r in _rows(database_url).values())
        assert [s.peak for s in services] == [2, 2]  # never more than 2 at one push service
        assert both.peak >= 3  # but the two services were served at the same time
    finally:
        for s in services:
            s.close()


def test_quiet_hours_and_opt_out_are_obeyed_per_guardian_within_one_batch(
    database_url: str, seed: Seed, vapid: VapidKey, fake: FakePushService
) -> None:
    phones = {}
    with psycopg.connect(database_url) as conn:
        local_now = conn.execute(
            "SELECT (now() AT TIME ZONE timezone)::time FROM schools WHERE id = %s", (seed.school,)
        ).fetchone()[0]
        for name in ("Awake", "Quiet", "Opted Out"):
            person, user = _guardian(conn, seed.school, name)
            b = fake.browser(vapid.application_server_key)
            _phone(conn, user, b.endpoint, b)
            _tap_row(conn, name, person, seed.school)
            phones[name] = (user, b)
        start = (datetime.combine(datetime.now(UTC).date(), local_now) - timedelta(hours=1)).time()
        end = (datetime.combine(datetime.now(UTC).date(), local_now) + timedelta(hours=1)).time()
        preferences.save(conn, phones["Quiet"][0], preferences.Settings(quiet_from=start,
                                                                         quiet_to=end))  # fmt: skip
        preferences.save(conn, phones["Opted Out"][0], preferences.Settings(attendance=False))
    service = WebPushService(database_url, vapid, timeout_s=5)
    try:
        _worker(database_url, service).run_once()
    finally:
        service.close()
    assert all(r[0] for r in _rows(database_url).values())
    assert [m["name"] for m in phones["Awake"][1].received] == ["Awake"]
    assert phones["Quiet"][1].received == [] and phones["Opted Out"][1].received == []
    with psycopg.connect(database_url) as conn:
        held = conn.execute("SELECT user_id, idempotency_key FROM push_held").fetchall()
        summaries = conn.execute(
            "SELECT payload->>'user_id' FROM outbox WHERE kind = 'quiet_summary'"
        ).fetchall()
    assert held == [(phones["Quiet"][0], "Quiet")]
    assert summaries == [(str(phones["Quiet"][0]),)]


def test_the_vapid_jwt_is_signed_once_per_push_service_and_renewed_before_it_expires(
    vapid: VapidKey,
) -> None:
    t = 1_800_000_000.0
    first = vapid.authorization("https://fcm.googleapis.com/fcm/send/a", now=t)
    assert vapid.authorization("https://fcm.googleapis.com/fcm/send/b", now=t + 60) == first
    other = vapid.authorization("https://updates.push.services.mozilla.com/wpush/v2/x", now=t)
    assert other != first  # its own aud
    renew_at = t + VAPID_LIFETIME_S - VAPID_REFRESH_S
    assert vapid.authorization("https://fcm.googleapis.com/x", now=renew_at - 1) == first
    assert vapid.authorization("https://fcm.googleapis.com/x", now=renew_at) != first
