"""Reconciliation: ask the state system about deliveries whose outcome we do not know, and fix
the ledger and the outbox.

Candidates are ``sent`` deliveries not touched for ``grace_s`` (a response was lost, or a worker
died mid-delivery) and ``dead`` ones (we gave up; the state system may have the record anyway).
For each, ``Connector.status(key)``:

* accepted -> ledger ``accepted`` with the reference; the outbox row is marked delivered (no more
  retries, and a dead letter is cleared);
* rejected -> ledger ``rejected`` with the reasons; outbox delivered;
* unknown  -> nothing: a ``sent`` row is still retried by the outbox; a ``dead`` one stays dead
  (visible in the API) until an operator requeues it (``cloud.workers.outbox.requeue_dead``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import psycopg

from cloud.db.conn import connect
from cloud.outbox.contract import Conn
from cloud.socialwallet.connector import Accepted, Connector, Rejected, TransientError
from cloud.socialwallet.handler import mark_final

log = logging.getLogger("qadam.socialwallet.reconcile")


@dataclass
class ReconcileReport:
    checked: int = 0
    accepted: int = 0
    rejected: int = 0
    unknown: int = 0
    errors: int = 0


def reconcile(
    conn: Conn, connector: Connector, *, grace_s: float = 600.0, limit: int = 500
) -> ReconcileReport:
    """One pass. ``conn`` in autocommit mode; each delivery is fixed in its own transaction."""
    report = ReconcileReport()
    rows = conn.execute(
        "SELECT idempotency_key, outbox_id FROM sw_deliveries"
        " WHERE state = 'dead'"
        "    OR (state = 'sent' AND updated_at < now() - make_interval(secs => %s))"
        " ORDER BY reconciled_at NULLS FIRST, updated_at LIMIT %s",
        (grace_s, limit),
    ).fetchall()
    for key, outbox_id in rows:
        report.checked += 1
        try:
            answer = connector.status(key)
        except TransientError as e:
            report.errors += 1
            log.warning("reconcile status failed key=%s error=%s", key, e)
            continue
        with conn.transaction():
            conn.execute(
                "UPDATE sw_deliveries SET reconciled_at = now() WHERE idempotency_key = %s",
                (key,),
            )
            if answer is None:
                report.unknown += 1
                continue
            if mark_final(conn, key, answer):
                conn.execute(
                    "UPDATE outbox SET delivered_at = coalesce(delivered_at, now()),"
                    " dead_at = NULL WHERE id = %s",
                    (outbox_id,),
                )
                if isinstance(answer, Accepted):
                    report.accepted += 1
                elif isinstance(answer, Rejected):
                    report.rejected += 1
                log.info("reconciled key=%s state=%s", key, type(answer).__name__.lower())
    return report


class Reconciler:
    """Runs ``reconcile`` every ``interval_s`` in a thread (start()/stop())."""

    def __init__(
        self, database_url: str, connector: Connector, *, interval_s: float = 300.0,
        grace_s: float = 600.0,
    ) -> None:  # fmt: skip
        self.database_url = database_url
        self.connector = connector
        self.interval_s = interval_s
        self.grace_s = grace_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sw-reconcile", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with connect(
                    self.database_url, autocommit=True, application_name="qadam-reconcile"
                ) as conn:
                    r = reconcile(conn, self.connector, grace_s=self.grace_s)
                if r.checked:
                    log.info("reconcile pass %s", r)
            except psycopg.Error as e:
                log.warning("reconcile pass failed error=%s", e)
