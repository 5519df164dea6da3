"""push_latency: a tap to its parent's phone (issue #16): published by a board, stored by the
ingest, its outbox row delivered by the outbox worker as an RFC 8291-encrypted Web Push POST,
received and decrypted by a local push service (tests/cloud/fake_push.py, which also checks
the VAPID signature), at a steady 1,000 taps/s; against the ingest's tap-to-ack latency of the
same taps in the same run.

Every tap is a different pupil with one guardian and one subscription, so each arriving push
names the tap it tells of (its ``name``). The taps carry the board's current time, so none is
older than push_max_age_s (those become one summary per child instead). Two outbox workers,
each with its own Web Push service (one connection each), as a deployment would run them.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from typing import Any

import psycopg

from bench.common import (
    REPO,
    Boards,
    Consumer,
    Row,
    database,
    device_ids,
    median,
    mosquitto,
    percentile,
)

DEVICES = 20
RATE = 1_000
SECONDS = 5
WORKERS = 2


class _Arrivals(list[dict[str, Any]]):
    """A browser's received messages, with the moment each arrived (time.perf_counter())."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def append(self, message: dict[str, Any]) -> None:
        self.at.append(time.perf_counter())
        super().append(message)


def _people(url: str, n: int, fake: Any, server_key: str) -> list[tuple[str, _Arrivals]]:
    """``n`` pupils, each with a card, a guardian and that guardian's subscription (English)."""
    from cryptography.hazmat.primitives import serialization

    browsers = []
    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute(
            "INSERT INTO people (school_id, kind, full_name) SELECT 'b1', 'student',"
            " 'Push pupil ' || i FROM generate_series(0, %s - 1) i RETURNING id", (n,)
        ).fetchall()]  # fmt: skip
        conn.execute(
            "INSERT INTO cards (card_key, person_id) SELECT lpad(to_hex(100000 + i), 16, '0'),"
            " p FROM unnest(%s::bigint[]) WITH ORDINALITY AS u(p, i)",
            (ids,),
        )
        users = [r[0] for r in conn.execute(
            "INSERT INTO users (email, password_hash, role) SELECT 'parent' || i ||"
            " '@bench.kz', '!', 'guardian' FROM generate_series(0, %s - 1) i RETURNING id", (n,)
        ).fetchall()]  # fmt: skip
        conn.execute(
            "INSERT INTO guardian_students (guardian_id, person_id)"
            " SELECT * FROM unnest(%s::bigint[], %s::bigint[])",
            (users, ids),
        )
        rows = []
        for i, user in enumerate(users):
            b = fake.browser(server_key)
            b.received = _Arrivals()
            point = b.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            rows.append((user, b.endpoint, point, b.auth))
            browsers.append((f"Push pupil {i}", b.received))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, lang)"
                " VALUES (%s, %s, %s, %s, 'en')",
                rows,
            )
    return browsers


def _tap(device: str, boot: int, seq: int, card: str) -> bytes:
    event = (
        f'{{"boot":{boot},"seq":{seq},"t":{int(time.time())},"sync":1,"up":{seq},"kind":"tap",'
        f'"reader":"in","card":"{card}","result":"granted","reason":"ok"}}'
    )
    return f'{{"v":1,"dev":"{device}","boot":{boot},"events":[{event}]}}'.encode()


def one_run(url: str, port: int, fake: Any, vapid: Any, boot: int) -> tuple[list[float], ...]:
    from cloud.push.handlers import ParentNotificationHandler
    from cloud.push.service import WebPushService
    from cloud.workers.outbox import OutboxWorker

    n = RATE * SECONDS
    browsers = _people(url, n, fake, vapid.application_server_key)
    prefix = f"p{uuid.uuid4().hex[:8]}"
    devices = device_ids(DEVICES)
    cons = Consumer("ingest", url, port, prefix)
    services = [WebPushService(url, vapid, timeout_s=10) for _ in range(WORKERS)]
    workers = [
        OutboxWorker(url, [ParentNotificationHandler(s, max_age_s=3600)], worker_id=f"bench-{i}",
                     batch=100, poll_s=0.01, lease_s=120)
        for i, s in enumerate(services)
    ]  # fmt: skip
    boards = None
    sent: list[float] = []
    try:
        cons.wait_subscribed()
        for w in workers:
            w.start()
        boards = Boards(port, prefix)
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            device, seq = devices[i % DEVICES], i // DEVICES + 1
            payload = _tap(device, boot, seq, f"{100000 + i + 1:016x}")
            now = time.perf_counter()
            boards.sent[(device, boot, seq)] = now
            sent.append(now)
            boards.client.publish(f"{prefix}/v1/dev/{device}/events", payload, qos=1)
        boards.wait_acks(n, timeout=120)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and sum(len(r) for _, r in browsers) < n:
            time.sleep(0.2)
        ack = boards.latencies()
        push = [r.at[0] - sent[i] for i, (_, r) in enumerate(browsers) if r.at]
        return push, ack, [float(n - len(push))]
    finally:
        stop = [threading.Thread(target=w.stop) for w in workers]
        for t in stop:
            t.start()
        for t in stop:
            t.join()
        for s in services:
            s.close()
        if boards is not None:
            boards.close()
        cons.stop()


def run(repeat: int = 1) -> list[Row]:
    sys.path.insert(0, str(REPO / "tests" / "cloud"))
    from fake_push import FakePushService

    from cloud.push.webpush import VapidKey

    vapid = VapidKey(VapidKey.generate_pem(), "mailto:bench@qadam.kz")
    p50, p99, worst, a50, a99, lost = [], [], [], [], [], []
    with database(DEVICES) as url, mosquitto() as port, FakePushService() as fake:
        for r in range(repeat):
            push, ack, missing = one_run(url, port, fake, vapid, boot=3000 + r)
            p50.append(percentile(push, 50) * 1000)
            p99.append(percentile(push, 99) * 1000)
            worst.append(max(push) * 1000)
            a50.append(percentile(ack, 50) * 1000)
            a99.append(percentile(ack, 99) * 1000)
            lost.append(missing[0])
            print(f"run {r + 1}/{repeat}: push p50 {p50[-1]:.0f} ms p99 {p99[-1]:.0f} ms "
                  f"max {worst[-1]:.0f} ms; tap-to-ack p50 {a50[-1]:.1f} ms p99 {a99[-1]:.1f} ms;"
                  f" not received {missing[0]:.0f}", flush=True)  # fmt: skip
    return [
        Row(f"p99 tap-to-push received at {RATE:,} taps/s", median(p99), "ms",
            baseline=median(a99), goal="<= 2,000 ms (baseline: tap-to-ack p99)"),
        Row(f"p50 tap-to-push received at {RATE:,} taps/s", median(p50), "ms",
            baseline=median(a50), goal="informational (baseline: tap-to-ack p50)"),
        Row("max tap-to-push received", median(worst), "ms", goal="informational"),
        Row(f"pushes not received of {RATE * SECONDS:,}", median(lost), "pushes", goal="0"),
    ]  # fmt: skip
