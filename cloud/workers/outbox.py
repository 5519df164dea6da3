"""The outbox delivery worker (invariant 6): every outbox row is delivered at least once, with its
idempotency key, by the handler registered for its ``kind``.

Claiming. A worker claims up to ``batch`` due rows of the kinds it has handlers for with
``SELECT ... FOR UPDATE SKIP LOCKED`` and, in the same short transaction, counts the attempt and
pushes ``next_attempt_at`` one *lease* ahead. Then it delivers outside any transaction. Several
workers never claim the same row at once; a worker that dies mid-delivery leaves its rows to be
claimed again when the lease runs out (at-least-once; the receiver dedupes on the key). The
attempt count is also the fencing token: an outcome is written only if nobody re-claimed the row
meanwhile (``attempts`` unchanged); success is always written.

Outcomes. ``Delivered`` sets ``delivered_at``. ``Retry`` schedules the next attempt with
exponential backoff and jitter (``base * 2**(attempts-1)``, capped, drawn from ``[d/2, d]``) and
keeps ``last_error``; after ``max_attempts`` the row becomes a dead letter (``dead_at``, visible,
never claimed again; ``requeue_dead`` puts it back). ``Fail`` is permanent: a dead letter at once.
A handler that raises is a ``Retry``.

``python -m cloud.workers.outbox`` runs one worker with the handlers the settings enable (parent
notifications always; Social Wallet when ``QADAM_SOCIALWALLET_URL`` is set, with its reconciler).
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from cloud.db.conn import close_quietly, connect
from cloud.outbox.contract import (
    Conn,
    Delivered,
    Fail,
    Handler,
    OutboxItem,
    Outcome,
    Retry,
    guarded,
)
from cloud.push.handlers import NOTICE_KINDS, NoticeHandler, ParentNotificationHandler
from cloud.push.message import LoggingPushService, PushService
from cloud.signals import stop_on_signals

log = logging.getLogger("qadam.outbox")

MAX_ERROR = 2000


# -- the worker --------------------------------------------------------------------------------


def backoff_s(attempts: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before the next attempt after ``attempts`` failed ones: exponential, capped, with
    jitter in [d/2, d] so that rows failing together do not come back together."""
    exp = min(max(attempts - 1, 0), 60)
    d = min(max_s, base_s * (2**exp))
    return rng.uniform(d / 2, d)


_CLAIM = """
WITH due AS (
    SELECT id FROM outbox
    WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= now()
      AND kind = ANY(%(kinds)s)
    ORDER BY next_attempt_at, id
    LIMIT %(n)s
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
SET attempts = o.attempts + 1, last_attempt_at = now(),
    next_attempt_at = now() + make_interval(secs => %(lease)s)
FROM due WHERE o.id = due.id
RETURNING o.id, o.kind, o.idempotency_key, o.payload, o.attempts, o.created_at
"""


def _err(text: str) -> str:
    return text.replace("\x00", "")[:MAX_ERROR]


def requeue_dead(conn: Conn, kind: str | None = None) -> int:
    """Put dead letters back in the queue (after the cause is fixed): attempts start over."""
    cur = conn.execute(
        "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = now()"
        " WHERE dead_at IS NOT NULL AND (%s::text IS NULL OR kind = %s)",
        (kind, kind),
    )
    return cur.rowcount


class OutboxWorker:
    def __init__(
        self,
        database_url: str,
        handlers: Sequence[Handler],
        *,
        worker_id: str | None = None,
        batch: int = 20,
        poll_s: float = 1.0,
        lease_s: float = 120.0,
        max_attempts: int = 12,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 3600.0,
        rng: random.Random | None = None,
    ) -> None:
        if not handlers:
            raise ValueError("an outbox worker needs at least one handler")
        self.handlers = {h.kind: h for h in handlers}
        if len(self.handlers) != len(handlers):
            raise ValueError("two handlers for the same kind")
        self.database_url = database_url
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.batch = batch
        self.poll_s = poll_s
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Conn | None = None
        self._next_beat = 0.0
        self.delivered = 0
        self.retried = 0
        self.dead = 0

    # -- lifecycle

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"outbox-{self.worker_id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the item in hand, then stop (claimed but unsent rows come back after the
        lease)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._close()

    def run_forever(self) -> None:
        """Run in the calling thread until SIGINT/SIGTERM (main thread only)."""
        try:
            with stop_on_signals(self._stop):
                self._run()
        finally:
            self._close()

    def _run(self) -> None:
        log.info("outbox worker started id=%s kinds=%s", self.worker_id, sorted(self.handlers))
        delay = 0.1
        while not self._stop.is_set():
            try:
                self._beat_if_due()
                n = self.run_once()
                delay = 0.1
            except Exception as e:  # database down, or a bug: log, back off, go on
                log.warning("outbox round failed error=%r; retrying in %.1fs", e, delay)
                self._close()
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            if n == 0:
                self._stop.wait(self.poll_s)
        self._forget()
        log.info("outbox worker stopped id=%s", self.worker_id)

    # -- heartbeat: which kinds are delivered at all (the Social Wallet status, D24-F)

    HEARTBEAT_S = 30.0  # cloud.socialwallet.status.STALE_S counts a worker for 120 s

    def heartbeat(self) -> None:
        """Record in ``outbox_workers`` that this worker runs and which kinds it delivers."""
        self._connection().execute(
            "INSERT INTO outbox_workers (worker_id, kinds) VALUES (%s, %s)"
            " ON CONFLICT (worker_id) DO UPDATE SET kinds = EXCLUDED.kinds, seen_at = now()",
            (self.worker_id, sorted(self.handlers)),
        )

    def _beat_if_due(self) -> None:
        now = time.monotonic()
        if now >= self._next_beat:
            self.heartbeat()
            self._next_beat = now + self.HEARTBEAT_S

    def _forget(self) -> None:
        try:
            self._connection().execute(
                "DELETE FROM outbox_workers WHERE worker_id = %s", (self.worker_id,)
            )
        except psycopg.Error as e:  # it ages out after STALE_S anyway
            log.warning("outbox worker could not remove its heartbeat error=%s", e)

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._conn = connect(
                self.database_url, autocommit=True, application_name="qadam-outbox"
            )
        return self._conn

    def _close(self) -> None:
        close_quietly(self._conn)
        self._conn = None

    # -- one round

    def claim(self) -> list[OutboxItem]:
        conn = self._connection()
        with conn.transaction():
            rows = conn.execute(
                _CLAIM, {"kinds": list(self.handlers), "n": self.batch, "lease": self.lease_s}
            ).fetchall()
            items = sorted(
                (OutboxItem(int(r[0]), r[1], r[2], r[3], int(r[4]), r[5]) for r in rows),
                key=lambda i: i.id,
            )
            by_kind: dict[str, list[OutboxItem]] = {}
            for it in items:
                by_kind.setdefault(it.kind, []).append(it)
            for kind, group in by_kind.items():
                self.handlers[kind].claimed(conn, group)
        return items

    def run_once(self) -> int:
        """Claim one batch and deliver it; return how many rows were handled."""
        items = self.claim()
        done = self._deliver_batches(items)
        for item in items:
            if item.id in done:
                continue
            if self._stop.is_set():
                break  # the rest come back after the lease
            if item.attempts > self.max_attempts:
                # claimed max_attempts times already (workers died mid-delivery): give up
                self._store(item, Retry("attempts exhausted before delivery"))
                continue
            self._store(item, guarded(self.handlers[item.kind].deliver, item))
        return len(items)

    def _deliver_batches(self, items: Sequence[OutboxItem]) -> set[int]:
        """Rows whose handler delivers many at once (an optional ``deliver_many(items) ->
        outcomes``, the Web Push notifications): one call per kind, the outcomes stored in one
        transaction. -> the ids handled here; every other row goes through ``deliver``."""
        done: set[int] = set()
        by_kind: dict[str, list[OutboxItem]] = {}
        for it in items:
            if it.attempts <= self.max_attempts:
                by_kind.setdefault(it.kind, []).append(it)
        for kind, group in by_kind.items():
            many = getattr(self.handlers[kind], "deliver_many", None)
            if many is None:
                continue
            try:
                outcomes = list(many(group))
                if len(outcomes) != len(group):
                    raise RuntimeError(f"{len(outcomes)} outcomes for {len(group)} rows")
            except Exception as e:  # a handler bug or an unexpected error: retry, visibly
                log.exception("outbox handler raised kind=%s rows=%d", kind, len(group))
                outcomes = [Retry(f"{type(e).__name__}: {e}")] * len(group)
            conn = self._connection()
            with conn.transaction():  # one commit for the batch's outcomes
                for item, outcome in zip(group, outcomes, strict=True):
                    self._store(item, outcome)
            done.update(i.id for i in group)
        return done

    def _store(self, item: OutboxItem, outcome: Outcome) -> None:
        conn = self._connection()
        handler = self.handlers[item.kind]
        with conn.transaction():
            dead = False
            if isinstance(outcome, Delivered):
                conn.execute(
                    "UPDATE outbox SET delivered_at = now(), last_error = NULL, dead_at = NULL"
                    " WHERE id = %s AND delivered_at IS NULL",
                    (item.id,),
                )
                self.delivered += 1
            else:
                dead = isinstance(outcome, Fail) or item.attempts >= self.max_attempts
                if dead:
                    cur = conn.execute(
                        "UPDATE outbox SET dead_at = now(), last_error = %s"
                        " WHERE id = %s AND attempts = %s AND delivered_at IS NULL",
                        (_err(outcome.error), item.id, item.attempts),
                    )
                    self.dead += 1
                else:
                    delay = backoff_s(
                        item.attempts, self.backoff_base_s, self.backoff_max_s, self.rng
                    )
                    cur = conn.execute(
                        "UPDATE outbox SET last_error = %s,"
                        " next_attempt_at = now() + make_interval(secs => %s)"
                        " WHERE id = %s AND attempts = %s AND delivered_at IS NULL",
                        (_err(outcome.error), delay, item.id, item.attempts),
                    )
                    self.retried += 1
                if cur.rowcount == 0:
                    return  # re-claimed by another worker meanwhile, or done: theirs to record
                log.info(
                    "outbox %s kind=%s key=%s attempts=%d error=%s",
                    "dead letter" if dead else "retry",
                    item.kind,
                    item.idempotency_key,
                    item.attempts,
                    outcome.error,
                )
            handler.record(conn, item, outcome, dead)


# -- the process -------------------------------------------------------------------------------


def build_handlers(settings: Any, push: PushService | None = None) -> list[Handler]:
    if push is None and getattr(settings, "push_vapid_key_file", None):
        from cloud.push.service import service_from_settings

        push = service_from_settings(settings)
    push = push or LoggingPushService()
    handlers: list[Handler] = [
        ParentNotificationHandler(push, max_age_s=getattr(settings, "push_max_age_s", 3 * 3600))
    ]
    handlers += [NoticeHandler(kind, push) for kind in NOTICE_KINDS]
    if settings.socialwallet_url:
        from cloud.socialwallet.handler import SocialWalletHandler, connector_from_settings

        handlers.append(SocialWalletHandler(connector_from_settings(settings)))
    if getattr(settings, "email_ready", False):  # SMTP configured (docs/email.md, D28-B)
        from cloud.mail.smtp import EmailHandler, SmtpConfig

        handlers.append(EmailHandler(SmtpConfig.from_settings(settings)))
    from cloud.webhooks.handler import handler_from_settings  # signed webhooks (D29-I)

    handlers.append(handler_from_settings(settings))
    if getattr(settings, "ejournal_url", None):  # an e-journal's days (D29-I)
        from cloud.integrations.ejournal.handler import handler_from_settings as ejournal

        handlers.append(ejournal(settings))
    return handlers


def worker_from_settings(settings: Any, handlers: Sequence[Handler]) -> OutboxWorker:
    return OutboxWorker(
        settings.database_url,
        handlers,
        worker_id=settings.outbox_worker_id,
        batch=settings.outbox_batch,
        poll_s=settings.outbox_poll_s,
        lease_s=settings.outbox_lease_s,
        max_attempts=settings.outbox_max_attempts,
        backoff_base_s=settings.outbox_backoff_base_s,
        backoff_max_s=settings.outbox_backoff_max_s,
    )


def main(argv: list[str] | None = None) -> int:
    from cloud.startup import start_worker

    return start_worker("cloud.workers.outbox", _serve, argv)


def _serve(settings: Any) -> int:  # cloud.settings.Settings
    handlers = build_handlers(settings)
    worker = worker_from_settings(settings, handlers)
    metrics = _socialwallet_surface(settings)
    reconciler = None
    if settings.socialwallet_url:
        from cloud.socialwallet.handler import connector_from_settings
        from cloud.socialwallet.reconcile import Reconciler

        reconciler = Reconciler(
            settings.database_url,
            connector_from_settings(settings),  # its own client: it runs in its own thread
            interval_s=settings.socialwallet_reconcile_s,
            grace_s=settings.socialwallet_reconcile_grace_s,
        )
        reconciler.start()
    log.info("outbox process %s", json.dumps({"kinds": sorted(worker.handlers)}))
    try:
        worker.run_forever()
    finally:
        if reconciler is not None:
            reconciler.stop()
        if metrics is not None:
            metrics.shutdown()
            metrics.server_close()
    return 0


def _socialwallet_surface(settings: Any) -> Any:
    """What operators see of the Social Wallet delivery (D24-F): a loud line at start when no
    connector is configured (the meal records wait), and the Prometheus gauges of
    cloud.socialwallet.status on ``outbox_metrics_port`` (0: none). Returns the HTTP server."""
    from cloud.socialwallet import status as sw_status

    if not settings.socialwallet_url:
        sw_status.warn_not_configured(settings.database_url)
    port = getattr(settings, "outbox_metrics_port", 0)
    if not port:
        return None
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry()
    registry.register(
        sw_status.SocialWalletCollector(settings.database_url, bool(settings.socialwallet_url))
    )
    server, _ = start_http_server(port, addr=settings.outbox_metrics_host, registry=registry)
    log.info("outbox metrics on %s:%d", settings.outbox_metrics_host, server.server_port)
    return server


if __name__ == "__main__":
    raise SystemExit(main())
