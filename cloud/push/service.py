"""The outbox's push service over Web Push: who gets a notification, in which words, and what
to do with each push service's answer.

Delivery is per subscription and remembered (push_deliveries), so when one parent's phone is
unreachable and the outbox retries, the other parent does not get the message twice.

A batch of messages (the outbox hands over everything one claim delivers) costs three queries
to find recipients, settings and subscriptions, concurrent POSTs (bounded per push service) and
one transaction for the answers (D28-N).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from cloud.db.conn import connect
from cloud.push import preferences, recipients, subscriptions
from cloud.push.http import HttpPool
from cloud.push.message import PushMessage
from cloud.push.texts import render
from cloud.push.webpush import Poster, PushResult, Subscription, VapidKey, origin, send

log = logging.getLogger("qadam.push")


class PushRetry(ConnectionError):
    """Some subscriptions could not be reached now; the outbox tries again later."""


# How many POSTs are in flight at once: in all, and to one push service (origin). Over the
# internet a push service answers in tens of milliseconds, so one worker's rate is about
# in-flight / round trip (16 to FCM at ~50 ms: ~320 a second; run more workers for more). More
# threads do not help on one core: the GIL makes them contend (64 threads drained a loopback push
# service slower than 8; docs/push.md "Throughput"). Bounded per origin so that one slow or
# throttling push service (429) cannot take every thread.
CONCURRENCY = 32
PER_ORIGIN = 16


@dataclass
class _Post:
    """One encrypted message to one subscription, and its answer."""

    index: int  # which message of the batch
    sub: Subscription
    body: bytes
    urgency: str
    result: PushResult | None = None


class WebPushService:
    def __init__(
        self,
        database_url: str,
        vapid: VapidKey,
        *,
        ttl_s: int = 24 * 3600,
        timeout_s: float = 10.0,
        client: Poster | None = None,
        concurrency: int = CONCURRENCY,
        per_origin: int = PER_ORIGIN,
    ) -> None:
        self.database_url = database_url
        self.vapid = vapid
        self.ttl_s = ttl_s
        self._own_client = client is None
        self.client: Poster = client or HttpPool(timeout_s, max_idle_per_origin=per_origin)
        self.per_origin = per_origin
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="webpush")
        self._origins: dict[str, threading.BoundedSemaphore] = {}
        self._lock_origins = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # one connection; the outbox may call from several threads
        self.results: dict[int, int] = {}  # HTTP status -> count, for logs and tests

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self._pool.shutdown(wait=True)
        if self._own_client and isinstance(self.client, HttpPool):
            self.client.close()

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.database_url, autocommit=True, application_name="qadam-push")
        return self._conn

    def send(self, message: PushMessage) -> None:
        error = self.send_many([message])[0]
        if error is not None:
            raise error

    def send_many(self, messages: Sequence[PushMessage]) -> list[Exception | None]:
        """Deliver a batch: per message None (sent to every subscription, or nothing to send)
        or the error that has the outbox retry it. Three queries find who gets what, the POSTs
        run concurrently, and the answers are stored in one transaction."""
        with self._lock:
            try:
                return self._send_many(self._db(), messages)
            except psycopg.OperationalError:
                self._conn = None  # reconnect on the next batch; the outbox retries these
                raise

    def _send_many(
        self, conn: psycopg.Connection[Any], messages: Sequence[PushMessage]
    ) -> list[Exception | None]:
        found = recipients.find(conn, messages)
        # the guardians' settings: kinds opted out of, quiet hours (held for a summary; D28-H)
        notices = [
            preferences.Notice(m.kind, m.reader, m.idempotency_key, m.person_id, r, f)
            for m, (r, f) in zip(messages, found, strict=True)
        ]
        admitted = preferences.admit_many(conn, notices)
        subs = subscriptions.for_recipients_many(
            conn, [(m.idempotency_key, r) for m, r in zip(messages, admitted, strict=True)]
        )
        posts = [
            _Post(i, sub, _body(m, lang, found[i][1]), _urgency(m))
            for i, m in enumerate(messages)
            for sub, lang in subs[i]
        ]
        self._post_all(posts)
        failures: list[list[str]] = [[] for _ in messages]
        final: list[tuple[str, int, int, bool]] = []
        for post in posts:
            message = messages[post.index]
            result = post.result
            if result is None:  # after an earlier message to the same phone failed
                failures[post.index].append(f"subscription {post.sub.id}: waits for a retry")
                continue
            self.results[result.status] = self.results.get(result.status, 0) + 1
            if result.retry:
                failures[post.index].append(
                    f"subscription {post.sub.id}: {result.status} {result.error}".strip()
                )
                continue
            _outcome_log(message, post.sub.id, result)
            final.append((message.idempotency_key, post.sub.id, result.status, result.gone))
        with conn.transaction():
            subscriptions.record_many(conn, final)
            for i, m in enumerate(messages):
                if m.kind == preferences.SUMMARY_KIND and admitted[i] and not failures[i]:
                    preferences.release(conn, admitted[i][0], found[i][1]["upto"])
        return [PushRetry("; ".join(f)) if f else None for f in failures]

    def _post_all(self, posts: list[_Post]) -> None:
        """Encrypt and POST every message; the answers land in ``post.result`` (a failure is an
        answer, never raised). One subscription's messages go one after another in the batch's
        order (a child's arrival before its departure), and after a failure the rest of them wait
        for the retry (``result`` stays None), so they never overtake it. Subscriptions run
        concurrently, at most ``per_origin`` at once to one push service."""
        queues: dict[int, list[_Post]] = {}
        for post in posts:
            queues.setdefault(post.sub.id, []).append(post)
        if len(queues) <= 1:
            for queue in queues.values():
                self._post_queue(queue)
            return
        for f in [self._pool.submit(self._post_queue, q) for q in queues.values()]:
            f.result()

    def _post_queue(self, queue: list[_Post]) -> None:
        aud = origin(queue[0].sub.endpoint)
        with self._lock_origins:
            gate = self._origins.setdefault(aud, threading.BoundedSemaphore(self.per_origin))
        with gate:
            for post in queue:
                try:
                    post.result = send(
                        self.client, self.vapid, post.sub, post.body,
                        ttl_s=self.ttl_s, urgency=post.urgency,
                    )  # fmt: skip
                except Exception as exc:  # e.g. a payload too large: this message is retried
                    post.result = PushResult(0, f"{type(exc).__name__}: {exc}")
                if post.result.retry:
                    return


def _body(message: PushMessage, lang: str, fields: dict[str, Any]) -> bytes:
    return json.dumps(render(message.kind, lang, fields), ensure_ascii=False).encode()


def _urgency(message: PushMessage) -> str:
    return "high" if message.kind == "low_balance" else "normal"


def _outcome_log(message: PushMessage, sub_id: int, result: PushResult) -> None:
    if result.delivered:
        return
    level = logging.INFO if result.gone else logging.WARNING
    log.log(
        level,
        "push key=%s subscription=%s status=%s %s",
        message.idempotency_key,
        sub_id,
        result.status,
        "gone: subscription retired" if result.gone else f"refused: {result.error}",
    )


def _recipients_and_fields(
    conn: psycopg.Connection[Any], message: PushMessage
) -> tuple[list[int], dict[str, Any]]:
    """One message's recipients and text fields (tests read a message's text through it)."""
    return recipients.find(conn, [message])[0]


def service_from_settings(settings: Any) -> WebPushService | None:
    """The Web Push service when a VAPID key is configured, else None (logging stand-in)."""
    if not settings.push_vapid_key_file:
        return None
    pem = Path(settings.push_vapid_key_file).read_bytes()
    return WebPushService(
        settings.database_url,
        VapidKey(pem, settings.push_vapid_subject),
        ttl_s=settings.push_ttl_s,
        timeout_s=settings.push_timeout_s,
    )
