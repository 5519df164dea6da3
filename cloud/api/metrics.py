"""The API's Prometheus metrics (issue #19): what the overload and rate limits refuse, the
admission queue and the connection pool (the token cache counts in cloud/auth/token_cache.py).

With several API processes (``api_workers`` > 1) ``qadam serve`` sets PROMETHEUS_MULTIPROC_DIR
before the workers start, each writes its values there, and the parent process serves their sum
on ``api_metrics_host:api_metrics_port`` (prometheus_client's multiprocess mode); with one
process it serves its own registry. Gauges are summed over the live processes.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client import multiprocess as prom_multiprocess

SHED = Counter(
    "qadam_api_shed_total",
    "Requests answered 503 + Retry-After because the process was saturated",
    ["reason"],  # queue_full, queue_timeout, pool_timeout
)
RATE_LIMITED = Counter(
    "qadam_api_rate_limited_total",
    "Requests answered 429 + Retry-After by the API rate limits",
    ["scope"],  # client (address), account (user)
)
INFLIGHT = Gauge("qadam_api_inflight", "Requests being worked on", multiprocess_mode="livesum")
QUEUED = Gauge(
    "qadam_api_queued", "Requests waiting for an admission slot", multiprocess_mode="livesum"
)
POOL = Gauge(
    "qadam_api_db_pool",
    "The connection pool (psycopg_pool statistics: pool_size, pool_available, requests_waiting)",
    ["stat"],
    multiprocess_mode="livesum",
)
POOL_STATS = ("pool_size", "pool_available", "requests_waiting")


def observe_pool(stats: dict[str, int]) -> None:
    for name in POOL_STATS:
        POOL.labels(name).set(stats.get(name, 0))


def prepare_multiprocess() -> str:
    """A fresh directory for the workers' values, named in PROMETHEUS_MULTIPROC_DIR (before any
    worker imports prometheus_client). Returns it; the caller removes it at exit."""
    path = tempfile.mkdtemp(prefix="qadam-api-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def serve_metrics(host: str, port: int, multiprocess_dir: str | None) -> None:
    """The metrics endpoint in a daemon thread (0 = none)."""
    if not port:
        return
    if multiprocess_dir is None:
        start_http_server(port, addr=host)
        return
    registry = CollectorRegistry()
    prom_multiprocess.MultiProcessCollector(registry, path=multiprocess_dir)
    start_http_server(port, addr=host, registry=registry)


def remove_multiprocess(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
