"""The outbox handler for kind ``webhook``: one signed JSON POST per row (D29-I).

A row names its subscriber and what happened. Taps (passages, meals) name a run of seq numbers
of one board boot, as the parent notifications do (D22); the taps are read from ``events``
when the row is claimed, with the subscriber's URL, secret and the school's allowlist, so a
delivery never reads the database outside the worker's transactions. A board gone offline and
an approved report carry their few fields in the row.

Answers: 2xx delivered; 408, 429 and 5xx, a timeout or a broken connection: retried with the
outbox's backoff; any other 3xx or 4xx: permanent (a dead letter, with the status in
``last_error``). A subscriber deleted, or its host taken off the allowlist, after the row was
written: permanent too. Redirects are not followed: they could lead off the allowlist.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from cloud.domain.errors import Invalid
from cloud.outbox.contract import BaseHandler, Conn, Delivered, Fail, OutboxItem, Outcome, Retry
from cloud.webhooks import signing
from cloud.webhooks.subscribers import check_url

KIND = "webhook"
USER_AGENT = "qadam-webhooks/1"
RETRY_STATUSES = frozenset({408, 429})

_SUBSCRIBERS = """
SELECT s.id, s.url, s.secret,
       ARRAY(SELECT h.host FROM webhook_hosts h WHERE h.school_id = s.school_id)
FROM webhook_subscriptions s WHERE s.id = ANY(%s)"""
# the granted taps of each (row, range of seqs) whose passage no not_passed withdrew
_TAPS = """
SELECT r.id, e.device_id, e.boot, e.seq, e.person_id, p.kind, e.reader,
       CASE WHEN e.clock_synced THEN e.occurred_at ELSE e.occurred_at_corrected END,
       e.received_at
FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[])
     AS r(id, device_id, boot, lo, hi)
JOIN events e ON e.device_id = r.device_id AND e.boot = r.boot AND e.seq BETWEEN r.lo AND r.hi
LEFT JOIN people p ON p.id = e.person_id
WHERE e.kind = 'tap' AND e.result = 'granted'
  AND NOT EXISTS (SELECT 1 FROM passage_withdrawals w WHERE w.device_id = e.device_id
                  AND w.boot = e.boot AND w.seq = e.seq)
ORDER BY r.id, e.seq"""


@dataclass(frozen=True)
class Ready:
    url: str
    secret: str
    body: bytes | None  # None: nothing left to tell (every tap of the run was withdrawn)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def tap_event(row: Sequence[Any]) -> dict[str, Any]:
    """One tap as a receiver sees it (docs/integrations.md): no names, no card numbers."""
    device, boot, seq, person, person_kind, reader, at, received = row
    event: dict[str, Any] = {
        "type": "meal" if reader == "canteen" else "passage",
        "event_id": f"{device}:{boot}:{seq}",
        "device_id": device,
        "person_id": person,
        "person_kind": person_kind,
        "occurred_at": _iso(at),  # None: the board's clock was never set; see received_at
        "received_at": _iso(received),
    }
    if reader != "canteen":
        event["direction"] = reader
    return event


def body_of(item: OutboxItem, events: list[dict[str, Any]]) -> bytes:
    doc = {"id": item.idempotency_key, "school_id": item.payload.get("school_id"),
           "created_at": item.created_at.isoformat(), "events": events}  # fmt: skip
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookHandler(BaseHandler):
    kind = KIND

    def __init__(
        self,
        timeout_s: float = 10.0,
        allow_http_loopback: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.allow_http_loopback = allow_http_loopback
        self.clock = clock
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False,
                                    headers={"User-Agent": USER_AGENT})  # fmt: skip
        self._ready: dict[int, Ready | Fail] = {}

    def close(self) -> None:
        self._client.close()

    # -- in the claim transaction

    def claimed(self, conn: Conn, items: Sequence[OutboxItem]) -> None:
        # a round delivers what it claimed before the next claim; anything left is from a round
        # the worker abandoned (stopping): those rows come back after their lease
        self._ready.clear()
        subs: dict[int, tuple[str, str, list[str]]] = {}
        wanted = sorted({int(i.payload.get("subscription_id", 0)) for i in items})
        for sid, url, secret, hosts in conn.execute(_SUBSCRIBERS, (wanted,)):
            subs[int(sid)] = (url, secret, list(hosts))
        taps = self._taps(conn, items)
        for item in items:
            self._ready[item.id] = self._prepare(item, subs, taps.get(item.id, []))

    def _taps(self, conn: Conn, items: Sequence[OutboxItem]) -> dict[int, list[dict[str, Any]]]:
        cols: tuple[list[Any], ...] = ([], [], [], [], [])
        for i in items:
            if i.payload.get("event") != "taps":
                continue
            for lo, hi in i.payload.get("runs", []):
                for col, v in zip(cols, (i.id, i.payload["device_id"], i.payload["boot"],
                                         lo, hi), strict=True):  # fmt: skip
                    col.append(v)
        out: dict[int, list[dict[str, Any]]] = {}
        if cols[0]:
            for row in conn.execute(_TAPS, cols):
                out.setdefault(int(row[0]), []).append(tap_event(row[1:]))
        return out

    def _prepare(
        self, item: OutboxItem, subs: dict[int, tuple[str, str, list[str]]],
        taps: list[dict[str, Any]],
    ) -> Ready | Fail:  # fmt: skip
        p = item.payload
        sub = subs.get(int(p.get("subscription_id", 0)))
        if sub is None:
            return Fail("the webhook subscriber was deleted")
        url, secret, hosts = sub
        try:
            check_url(url, hosts, self.allow_http_loopback)
        except Invalid as e:
            return Fail(f"refused: {e.msg}")
        event = p.get("event")
        if event == "taps":
            kinds = set(p.get("kinds", []))
            events = [e for e in taps if e["type"] in kinds]
            return Ready(url, secret, body_of(item, events) if events else None)
        if event in ("device_offline", "report_approved"):
            return Ready(url, secret, body_of(item, [{"type": event, **p.get("data", {})}]))
        return Fail(f"bad payload: unknown event {event!r}")

    # -- outside any transaction

    def deliver(self, item: OutboxItem) -> Outcome:
        ready = self._ready.pop(item.id, None)
        if ready is None:  # not prepared at claim time: never mark such a row delivered
            return Retry("the delivery was not prepared at claim time")
        if isinstance(ready, Fail):
            return ready
        if ready.body is None:
            return Delivered("nothing to send: every tap was withdrawn")
        ts = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            signing.ID_HEADER: item.idempotency_key,
            signing.TIMESTAMP_HEADER: str(ts),
            signing.SIGNATURE_HEADER: signing.signature(ready.secret, ts, ready.body),
        }
        try:
            r = self._client.post(ready.url, content=ready.body, headers=headers)
        except httpx.HTTPError as e:  # timeouts, refused or broken connections
            return Retry(f"{type(e).__name__}: {e}")
        if 200 <= r.status_code < 300:
            return Delivered(r.status_code)
        answer = f"HTTP {r.status_code}: {r.text[:200]}"
        if r.status_code in RETRY_STATUSES or r.status_code >= 500:
            return Retry(answer)
        return Fail(answer)


def handler_from_settings(settings: Any) -> WebhookHandler:
    return WebhookHandler(
        timeout_s=settings.webhook_timeout_s,
        allow_http_loopback=settings.webhook_allow_http_loopback,
    )
