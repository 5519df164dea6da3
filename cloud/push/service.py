"""The outbox's push service over Web Push: who gets a notification, in which words, and what
to do with each push service's answer.

Delivery is per subscription and remembered (push_deliveries), so when one parent's phone is
unreachable and the outbox retries, the other parent does not get the message twice.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import psycopg

from cloud.db.conn import connect
from cloud.push import preferences, subscriptions
from cloud.push.texts import render
from cloud.push.webpush import PushResult, VapidKey, send
from cloud.workers.outbox import PushMessage

log = logging.getLogger("qadam.push")


class PushRetry(ConnectionError):
    """Some subscriptions could not be reached now; the outbox tries again later."""


class WebPushService:
    def __init__(
        self,
        database_url: str,
        vapid: VapidKey,
        *,
        ttl_s: int = 24 * 3600,
        timeout_s: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        self.database_url = database_url
        self.vapid = vapid
        self.ttl_s = ttl_s
        self.client = client or httpx.Client(timeout=timeout_s, follow_redirects=False)
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()  # one connection; the outbox may call from several threads
        self.results: dict[int, int] = {}  # HTTP status -> count, for logs and tests

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        self.client.close()

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.database_url, autocommit=True, application_name="qadam-push")
        return self._conn

    def send(self, message: PushMessage) -> None:
        with self._lock:
            try:
                self._send(self._db(), message)
            except psycopg.OperationalError:
                self._conn = None  # reconnect on the next message; the outbox retries this one
                raise

    def _send(self, conn: psycopg.Connection[Any], message: PushMessage) -> None:
        recipients, fields = _recipients_and_fields(conn, message)
        # the guardians' settings: kinds opted out of, quiet hours (held for a summary; D28-H)
        recipients = preferences.admit(
            conn, message.kind, message.reader, message.idempotency_key, message.person_id,
            recipients, fields,
        )  # fmt: skip
        if not recipients:
            return
        failures: list[str] = []
        for sub, lang in subscriptions.for_recipients(conn, recipients, message.idempotency_key):
            body = json.dumps(render(message.kind, lang, fields), ensure_ascii=False).encode()
            result = send(
                self.client,
                self.vapid,
                sub,
                body,
                ttl_s=self.ttl_s,
                urgency="high" if message.kind == "low_balance" else "normal",
            )
            self.results[result.status] = self.results.get(result.status, 0) + 1
            if result.retry:
                failures.append(f"subscription {sub.id}: {result.status} {result.error}".strip())
                continue
            _outcome_log(message, sub.id, result)
            subscriptions.record(
                conn, message.idempotency_key, sub.id, result.status, gone=result.gone
            )
        if failures:
            raise PushRetry("; ".join(failures))
        if message.kind == preferences.SUMMARY_KIND:
            preferences.release(conn, recipients[0], fields["upto"])


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
    p = message.payload or {}
    fields: dict[str, Any] = {}
    if message.kind == "report_reminder":
        school = message.school_id or p.get("school_id")
        rows = conn.execute(
            "SELECT id FROM users WHERE role = 'school_admin' AND school_id = %s AND active",
            (school,),
        ).fetchall()
        fields = {"school_id": school, "month": p.get("month"), "deadline": p.get("deadline")}
        return [r[0] for r in rows], fields
    if message.kind == preferences.SUMMARY_KIND:
        user, upto = int(p["user_id"]), str(p["release_at"])
        items = preferences.held(conn, user, upto)
        return ([user] if items else []), {"upto": upto, "items": items}
    if message.person_id is None:
        return [], fields
    if message.kind == "tap_summary":
        instants = (p.get("first"), p.get("last"))
    else:
        instants = (message.occurred_at, None)
    # the local date and time in the school's zone, by PostgreSQL's rules (as attendance and
    # the reports have them; zoneinfo does not know every zone schools.timezone accepts)
    person = conn.execute(
        "SELECT pe.full_name,"
        " to_char(%s::timestamptz AT TIME ZONE s.timezone, 'YYYY-MM-DD HH24:MI'),"
        " to_char(%s::timestamptz AT TIME ZONE s.timezone, 'YYYY-MM-DD HH24:MI')"
        " FROM people pe JOIN schools s ON s.id = pe.school_id WHERE pe.id = %s",
        (*instants, message.person_id),
    ).fetchone()
    if person is None:
        return [], fields
    guardians = conn.execute(
        "SELECT g.guardian_id FROM guardian_students g WHERE g.person_id = %s",
        (message.person_id,),
    ).fetchall()
    fields = {"person_id": message.person_id, "name": person[0]}
    if message.kind == "low_balance":
        fields.update(balance=p.get("balance"), below_floor=bool(p.get("below_floor")))
    elif message.kind == "tap_summary":
        first, last = _split(person[1]), _split(person[2])
        fields.update(
            count=p.get("count"), untimed=p.get("untimed") or 0,
            first_date=first["date"], first_time=first["time"],
            last_date=last["date"], last_time=last["time"],
        )  # fmt: skip
    else:
        fields.update(reader=message.reader, **_split(person[1]))
        if p.get("time_source") == "received":
            fields["time_source"] = "received"
    return [g[0] for g in guardians], fields


def _split(local: str | None) -> dict[str, str]:
    """'YYYY-MM-DD HH:MM' -> ``date`` and ``time`` (empty strings for no instant)."""
    date, _, time = (local or "").partition(" ")
    return {"date": date, "time": time}


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
