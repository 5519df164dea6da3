"""Is anything delivering the meal records, and how many wait? (docs/social-wallet.md "Is the
connector configured?", D24-F)

With ``QADAM_SOCIALWALLET_URL`` unset the outbox worker has no Social Wallet handler and every
meal record stays ``pending``. That must be visible, not silent:

* every outbox worker writes a heartbeat with the kinds it delivers (``outbox_workers``,
  migration 0019); :func:`status` reads it, so the API answers ``connector: not_configured`` when
  no worker seen in the last :data:`STALE_S` seconds delivers ``social_wallet``, with the counts
  of records waiting;
* the worker serves Prometheus gauges (:class:`SocialWalletCollector`) on
  ``QADAM_OUTBOX_METRICS_PORT``: ``qadam_socialwallet_connector_configured`` (0/1) and
  ``qadam_socialwallet_deliveries{state}``, ``qadam_socialwallet_oldest_waiting_seconds``;
* :func:`warn_not_configured` is the loud line a worker logs at start without a connector.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cloud.db.conn import connect

log = logging.getLogger("qadam.socialwallet")

KIND = "social_wallet"
STALE_S = 120  # a worker not seen for this long is not counted (OutboxWorker.HEARTBEAT_S: 30)
WAITING = ("pending", "sent", "dead", "rejected")  # what is not (yet) accepted


@dataclass
class Status:
    connector: str  # configured | not_configured
    workers: int  # outbox workers seen in the last STALE_S seconds
    detail: str
    waiting: dict[str, int] = field(default_factory=dict)
    oldest_waiting_at: datetime | None = None


def counts(conn: Any, schools: list[str] | None) -> tuple[dict[str, int], datetime | None]:
    """Deliveries by waiting state (in ``schools``; None = all) and the oldest pending/sent/dead
    one's creation time. Each state is counted through a partial index."""
    by_state = {s: 0 for s in WAITING}
    for st, n in conn.execute(
        "SELECT state, count(*) FROM sw_deliveries WHERE state = ANY(%s)"
        " AND (%s::text[] IS NULL OR school_id = ANY(%s::text[])) GROUP BY state",
        (list(WAITING), schools, schools),
    ).fetchall():
        by_state[str(st)] = int(n)
    row = conn.execute(
        "SELECT min(created_at) FROM sw_deliveries WHERE state IN ('pending', 'sent', 'dead')"
        " AND (%s::text[] IS NULL OR school_id = ANY(%s::text[]))",
        (schools, schools),
    ).fetchone()
    return by_state, (row[0] if row else None)


def connector_state(conn: Any) -> tuple[str, int, str]:
    """(configured | not_configured, workers seen recently, a sentence for people)."""
    rows = conn.execute(
        "SELECT kinds FROM outbox_workers WHERE seen_at > now() - make_interval(secs => %s)",
        (STALE_S,),
    ).fetchall()
    delivering = sum(1 for (kinds,) in rows if KIND in kinds)
    if delivering:
        return "configured", len(rows), f"{delivering} outbox worker(s) deliver meal records"
    if rows:
        return (
            "not_configured",
            len(rows),
            "the outbox workers run without a Social Wallet connector (set QADAM_SOCIALWALLET_URL"
            " and restart them): meal records wait",
        )
    return (
        "not_configured",
        0,
        f"no outbox worker has reported in the last {STALE_S} s (start python -m"
        " cloud.workers.outbox with QADAM_SOCIALWALLET_URL): meal records wait",
    )


def status(conn: Any, schools: list[str] | None) -> Status:
    connector, workers, detail = connector_state(conn)
    waiting, oldest = counts(conn, schools)
    return Status(connector, workers, detail, waiting, oldest)


def warn_not_configured(database_url: str) -> str:
    """The loud line of a worker started without a connector: how many records wait."""
    waiting = "an unknown number of"
    try:
        with connect(database_url, autocommit=True, application_name="qadam-outbox") as conn:
            by_state, _ = counts(conn, None)
        waiting = str(by_state["pending"] + by_state["sent"] + by_state["dead"])
    except psycopg.Error as e:
        log.warning("could not count waiting meal records error=%s", e)
    msg = (
        "SOCIAL WALLET CONNECTOR NOT CONFIGURED: QADAM_SOCIALWALLET_URL is unset, so this worker"
        f" delivers no meal records; {waiting} meal records wait (pending) until a worker with"
        " a connector runs"
    )
    log.error(msg)
    return msg


class SocialWalletCollector(Collector):
    """Prometheus gauges read from the database at each scrape (one short query per state,
    each through a partial index)."""

    def __init__(self, database_url: str, configured: bool) -> None:
        self.database_url = database_url
        self.configured = configured

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "qadam_socialwallet_connector_configured",
            "1 when this worker delivers meal records to the Social Wallet, 0 when"
            " QADAM_SOCIALWALLET_URL is unset (records wait)",
            value=1 if self.configured else 0,
        )
        try:
            with connect(
                self.database_url, autocommit=True, application_name="qadam-outbox-metrics"
            ) as conn:
                by_state, oldest = counts(conn, None)
                now = conn.execute("SELECT now()").fetchone()
        except psycopg.Error as e:
            log.warning("social wallet metrics: database error=%s", e)
            return
        g = GaugeMetricFamily(
            "qadam_socialwallet_deliveries",
            "Meal records not accepted (yet), by ledger state: pending/sent/dead wait for"
            " delivery, rejected ones for an operator's fix and resend",
            labels=["state"],
        )
        for st in WAITING:
            g.add_metric([st], by_state[st])
        yield g
        age = 0.0
        if oldest is not None and now is not None:
            age = max((now[0] - oldest).total_seconds(), 0.0)
        yield GaugeMetricFamily(
            "qadam_socialwallet_oldest_waiting_seconds",
            "Age of the oldest meal record still pending, sent or dead (0: none)",
            value=age,
        )
