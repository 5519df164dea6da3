"""The workers' /healthz, /readyz and /metrics (cloud/ops.py): ready only when the database
(and the broker, for a worker that talks to boards) answers; a real worker process serves them
on its offset from the base port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from cloud.ops import OFFSETS, OpsServer

REPO = Path(__file__).resolve().parents[2]


def _free_port(span: int = 1) -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + span < 65000 and all(_unused(base + i) for i in range(span)):
            return base
    raise RuntimeError("no free port range")


def _unused(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=10)


def test_ready_when_database_and_broker_answer(database_url: str, mqtt_addr: Any) -> None:
    srv = OpsServer("worker.test", "127.0.0.1", 0, database_url, mqtt_addr).start()
    try:
        assert _get(srv.port, "/healthz").json() == {"status": "ok", "process": "worker.test"}
        r = _get(srv.port, "/readyz")
        assert r.status_code == 200 and r.json()["problems"] == []
        metrics = _get(srv.port, "/metrics").text
        assert 'qadam_process_info{process="worker.test"} 1.0' in metrics
        assert "process_cpu_seconds_total" in metrics
        assert _get(srv.port, "/nope").status_code == 404
    finally:
        srv.stop()


def test_not_ready_names_what_is_down(database_url: str) -> None:
    closed = _free_port()  # nothing listens there
    bad_db = database_url.rsplit("/", 1)[0] + "/no_such_database_here"
    srv = OpsServer("worker.test", "127.0.0.1", 0, bad_db, ("127.0.0.1", closed)).start()
    try:
        assert _get(srv.port, "/healthz").status_code == 200  # alive, though not ready
        r = _get(srv.port, "/readyz")
        assert r.status_code == 503
        problems = r.json()["problems"]
        assert [p.split(":")[0] for p in problems] == ["database", "broker"]
        assert "no_such_database_here" not in r.text  # the URL is not echoed
    finally:
        srv.stop()


def test_a_worker_process_serves_them_on_its_offset(database_url: str) -> None:
    base = _free_port(len(OFFSETS))
    port = base + OFFSETS["cloud.workers.reports"]
    env = dict(os.environ, QADAM_DATABASE_URL=database_url, QADAM_WORKER_OPS_PORT=str(base))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "worker", "reports"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = _get(port, "/readyz")
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "no ops endpoint"
                time.sleep(0.2)
        assert r.status_code == 200, r.text
        assert r.json()["process"] == "worker.reports"
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert lines and all(line["process"] == "worker.reports" for line in lines), err
