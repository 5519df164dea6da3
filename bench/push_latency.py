"""push_latency: a tap to its parent's phone (issue #16): published by a board, stored by the
ingest, its outbox row delivered by the outbox worker as an RFC 8291-encrypted Web Push POST,
received by a local push endpoint, at a steady 1,000 taps/s; against the ingest's tap-to-ack
latency of the same taps in the same run.

As deployed, every part is its own process: the ingest, two outbox workers
(``python -m cloud.workers.outbox``), the push endpoint (bench/push_sink.py, which records each
request and its arrival time); this process plays the boards. After the run every recorded
request goes through the fake push service's checks (tests/cloud/fake_push.py: VAPID signature
and audience, TTL, decryption with the browser's key), so a push counts only if a push service
would have accepted it and the browser could read it.

Every tap is a different pupil with one guardian and one subscription, so each arriving push
names the tap it tells of (its ``name``). The taps carry the board's current time, so none is
older than push_max_age_s (those become one summary per child instead).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
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
from bench.push_sink import SinkProcess
from cloud.push.webpush import VapidKey

DEVICES = 20
RATE = 1_000
SECONDS = 5
WORKERS = 2


def _people(url: str, n: int, fake: Any, server_key: str) -> list[tuple[Any, str]]:
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
            point = b.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            rows.append((user, b.endpoint, point, b.auth))
            browsers.append((b, f"Push pupil {i}"))
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


def _workers(url: str, pem_file: str) -> list[subprocess.Popen[bytes]]:
    """``python -m cloud.workers.outbox`` processes, configured as a deployment would be."""
    env = dict(
        os.environ,
        QADAM_DATABASE_URL=url,
        QADAM_PUSH_VAPID_KEY_FILE=pem_file,
        QADAM_PUSH_VAPID_SUBJECT="mailto:bench@qadam.kz",
        QADAM_PUSH_MAX_AGE_S="3600",
        QADAM_OUTBOX_BATCH="100",
        QADAM_OUTBOX_POLL_S="0.01",
        QADAM_OUTBOX_LEASE_S="120",
        PYTHONPATH=str(REPO),
    )
    procs = []
    for i in range(WORKERS):
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloud.workers.outbox"],
            env=dict(env, QADAM_OUTBOX_WORKER_ID=f"bench-{i}"),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, log))
    # wait until each one runs (its start-up line), so no tap waits for a worker to start
    deadline = time.monotonic() + 60
    for proc, log in procs:
        while True:
            log.seek(0)
            text = log.read()
            if b"outbox process" in text:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop([p for p, _ in procs])
                raise RuntimeError(f"outbox worker did not start: {text[-1500:]!r}")
            time.sleep(0.05)
    return [proc for proc, _ in procs]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def one_run(url: str, port: int, fake: Any, pem_file: str, boot: int) -> tuple[list[float], ...]:
    n = RATE * SECONDS
    sink = SinkProcess()
    fake.origin = f"http://127.0.0.1:{sink.port}"  # the browsers' endpoints are the sink's
    server_key = VapidKey(Path(pem_file).read_bytes(), "mailto:bench@qadam.kz")
    browsers = _people(url, n, fake, server_key.application_server_key)
    prefix = f"p{uuid.uuid4().hex[:8]}"
    devices = device_ids(DEVICES)
    cons = Consumer("ingest", url, port, prefix)
    workers: list[subprocess.Popen[bytes]] = []
    boards = None
    sent: list[float] = []
    received: list[dict[str, Any]] | None = None
    try:
        cons.wait_subscribed()
        workers = _workers(url, pem_file)
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
        with psycopg.connect(url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute("SELECT count(*) FROM push_deliveries").fetchone()
                if row is not None and row[0] >= n:
                    break
                time.sleep(0.2)
        ack = boards.latencies()
        _stop(workers)
        received = sink.received()
    finally:
        _stop(workers)
        if received is None:
            sink.received()
        if boards is not None:
            boards.close()
        cons.stop()
    # the push service's checks, after the run: VAPID, encryption, one message per pupil
    arrived: list[float | None] = [None] * n
    index = {b.token: i for i, (b, _) in enumerate(browsers)}
    for r in received:
        token = r["path"].rsplit("/", 1)[-1]
        status, why = fake._receive(token, r["headers"], base64.b64decode(r["body"]))
        if status != 201:
            raise RuntimeError(f"the push service would answer {status}: {why}")
        i = index[token]
        if arrived[i] is None:
            arrived[i] = r["at"]
    for i, (b, name) in enumerate(browsers):
        if b.received and name not in json.dumps(b.received[0], ensure_ascii=False):
            raise RuntimeError(f"pupil {i}'s guardian got another pupil's message")
    push = [at - sent[i] for i, at in enumerate(arrived) if at is not None]
    return push, ack, [float(n - len(push))]


def run(repeat: int = 1) -> list[Row]:
    if not sys.platform.startswith("linux"):
        raise SystemExit("push_latency compares perf_counter() across processes: Linux only")
    sys.path.insert(0, str(REPO / "tests" / "cloud"))
    from fake_push import FakePushService

    p50, p99, worst, a50, a99, lost = [], [], [], [], [], []
    with (
        database(DEVICES) as url,
        mosquitto() as port,
        tempfile.NamedTemporaryFile(suffix=".pem") as pem,
    ):
        pem.write(VapidKey.generate_pem())
        pem.flush()
        fake = FakePushService()  # its checks only: the sink process receives
        for r in range(repeat):
            push, ack, missing = one_run(url, port, fake, pem.name, boot=3000 + r)
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
