"""Operations surface of the ingest: Prometheus metrics (its JSON log lines: cloud/logs.py).

Each :class:`~cloud.ingest.service.Ingest` owns one :class:`IngestMetrics` with its own
``CollectorRegistry`` (several ingests can live in one process, e.g. in tests), served over HTTP
on ``ingest_metrics_port`` when that is not 0.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class IngestMetrics:
    def __init__(self, queue_depth: Callable[[], float]) -> None:
        r = self.registry = CollectorRegistry()
        self.events = Counter("qadam_ingest_events", "New event rows committed", registry=r)
        self.duplicates = Counter(
            "qadam_ingest_duplicates", "Events received again and skipped (dedupe)", registry=r
        )
        self.rejects = Counter(
            "qadam_ingest_rejects", "Payloads quarantined, by reason", ["reason"], registry=r
        )
        self.identity_reused = Counter(
            "qadam_ingest_identity_reused",
            "Events whose identity (device, boot, seq) was stored with other content"
            " (quarantined as identity_reused: a re-flashed board restarted its boot counter)",
            registry=r,
        )
        self.acks = Counter("qadam_ingest_acks", "Application acks published", registry=r)
        self.db_errors = Counter("qadam_ingest_db_errors", "Database errors", registry=r)
        self.batch_size = Histogram(
            "qadam_ingest_batch_size", "Events per flush (one transaction)",
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "qadam_ingest_commit_seconds", "Time to store and commit one flush",
            buckets=COMMIT_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "qadam_ingest_queue_depth", "Messages received and not yet stored", registry=r
        )
        self.queue_depth.set_function(queue_depth)
        self.lag = Gauge(
            "qadam_ingest_lag_seconds",
            "For the last flush: commit time minus arrival time of its oldest message",
            registry=r,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def serve(self, port: int, host: str) -> int:
        """Serve ``/metrics`` on host:port in a daemon thread; return the bound port."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v
