"""What the webhook tests share: the canteen world (tests/cloud/fake_socialwallet.py) with an
API client that may register loopback receivers, taps stored through the real ingest writer,
and an in-process outbox worker with only the webhook handler."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from api_world import World, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.settings import Settings
from cloud.webhooks.handler import WebhookHandler
from cloud.workers.outbox import OutboxWorker

FAST = dict(batch=10, poll_s=0.05, lease_s=5.0, max_attempts=10, backoff_base_s=0.05,
            backoff_max_s=0.2)  # fmt: skip


@contextmanager
def api(url: str, w: World, loopback: bool = True) -> Iterator[TestClient]:
    """The API with every role of the world signed in."""
    s = Settings(database_url=url, auth_required=True, webhook_allow_http_loopback=loopback)
    with TestClient(create_app(s)) as client:
        login_all(client, w, url)
        yield client


def allow_loopback(client: TestClient, w: World, school: str = "s1") -> None:
    r = client.put(f"/api/v1/schools/{school}/webhook-hosts", json={"hosts": ["127.0.0.1"]},
                   headers=w.auth("platform_admin"))  # fmt: skip
    assert r.status_code == 200, r.text


def subscribe(client: TestClient, w: World, url: str, events: list[str],
              school: str = "s1") -> dict[str, Any]:  # fmt: skip
    who = w.auth("school_admin" if school == "s1" else "platform_admin")
    r = client.post(f"/api/v1/schools/{school}/webhooks", json={"url": url, "events": events},
                    headers=who)  # fmt: skip
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def ingest(url: str, device: str, seqs: list[int], card: str, reader: str, boot: int = 5) -> int:
    """Granted taps through the real ingest writer (its derived rows in its transaction)."""
    from cloud_helpers import T0, batch_doc, dumps, topic

    from cloud.ingest.decode import Batch, decode
    from cloud.ingest.writer import write

    inserted = 0
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(0, len(seqs), 32):
            doc = batch_doc(dev=device, boot=boot, seqs=seqs[i : i + 32], card=card, reader=reader)
            for ev in doc["events"]:
                ev["t"] = T0 + ev["seq"]
            b = decode(topic("qadam", device), dumps(doc))
            assert isinstance(b, Batch), b
            inserted += write(conn, [b]).inserted
    return inserted


def webhook_rows(url: str) -> list[tuple[str, dict[str, Any], Any, Any, int, str | None]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT idempotency_key, payload, delivered_at, dead_at, attempts, last_error"
            " FROM outbox WHERE kind = 'webhook' ORDER BY id"
        ).fetchall()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def worker(url: str, wid: str = "w1", **kw: Any) -> OutboxWorker:
    opts: dict[str, Any] = dict(FAST)
    opts.update(kw)
    handler = WebhookHandler(timeout_s=5.0, allow_http_loopback=True)
    return OutboxWorker(url, [handler], worker_id=wid, **opts)


def wait_done(url: str, n: int, timeout: float = 30.0) -> None:
    """Until n webhook rows are delivered or dead."""
    deadline = time.monotonic() + timeout
    while True:
        rows = webhook_rows(url)
        done = sum(1 for r in rows if r[2] is not None or r[3] is not None)
        if done == n and len(rows) == n:
            return
        assert time.monotonic() < deadline, f"{done} of {len(rows)} done, wanted {n}: {rows}"
        time.sleep(0.05)
