"""Each worker's operations endpoints (issue #18): ``/healthz`` (the process answers),
``/readyz`` (it can do its work: the database answers and, for a worker that talks to boards,
the broker accepts connections) and ``/metrics`` (Prometheus: the process's CPU, memory and
file descriptors, Python's GC, and ``qadam_process_info``), on
``worker_ops_host:worker_ops_port + offset`` — one base port, a fixed offset per worker, so the
processes of `qadam run-all` (which share one environment) do not collide. 0 = no endpoints.
The API has its own ``/healthz`` and metrics port, the ingest its metrics port."""

from __future__ import annotations

import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Info, generate_latest

log = logging.getLogger("qadam.ops")

# worker module -> its offset from worker_ops_port (keep in step with docs/operations.md)
OFFSETS = {
    "cloud.workers.whitelist_push": 0,
    "cloud.workers.balance_push": 1,
    "cloud.workers.outbox": 2,
    "cloud.workers.reports": 3,
    "cloud.workers.command_push": 4,
    "cloud.workers.ota_push": 5,
    "cloud.workers.retention": 6,
    "cloud.integrations.ejournal.daily": 7,
}
_info = Info("qadam_process", "which qadam process this is")


def database_ready(url: str) -> str | None:
    """None when the database answers, else what failed (no secrets: the URL is not echoed)."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        return f"database: {type(e).__name__}"
    return None


def broker_ready(host: str, port: int) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as e:
        return f"broker: {type(e).__name__}"


class OpsServer:
    def __init__(
        self, process: str, host: str, port: int, database_url: str,
        broker: tuple[str, int] | None = None,
    ) -> None:  # fmt: skip
        self.process = process
        self.database_url = database_url
        self.broker = broker
        _info.info({"process": process})
        ops = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/healthz":
                    self._send(200, {"status": "ok", "process": ops.process})
                elif self.path == "/readyz":
                    problems = ops.problems()
                    status = 503 if problems else 200
                    self._send(status, {"status": "error" if problems else "ok",
                                        "process": ops.process, "problems": problems})  # fmt: skip
                elif self.path == "/metrics":
                    body = generate_latest(REGISTRY)
                    self._raw(200, body, CONTENT_TYPE_LATEST)
                else:
                    self._send(404, {"status": "not found"})

            def _send(self, status: int, doc: dict[str, Any]) -> None:
                self._raw(status, json.dumps(doc).encode(), "application/json")

            def _raw(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:  # probes every few seconds: not logged
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, name="ops", daemon=True)

    def problems(self) -> list[str]:
        found = [database_ready(self.database_url)]
        if self.broker is not None:
            found.append(broker_ready(*self.broker))
        return [p for p in found if p]

    def start(self) -> OpsServer:
        self._thread.start()
        log.info("ops endpoints", extra={"fields": {"port": self.port}})
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def for_worker(what: str, settings: Any, broker: bool) -> OpsServer | None:
    """The worker's endpoints if ``worker_ops_port`` is set (started), else None."""
    if not settings.worker_ops_port:
        return None
    port = settings.worker_ops_port + OFFSETS.get(what, len(OFFSETS))
    addr = (settings.mqtt_host, settings.mqtt_port) if broker else None
    name = "worker." + what.rsplit(".", 1)[-1]
    return OpsServer(name, settings.worker_ops_host, port, settings.database_url, addr).start()
