"""`python -m cloud.ingest` and `python -m cloud.api` started as processes against an EMPTY
database: each applies the migrations on start, then works, and stops cleanly on SIGINT."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
from cloud_helpers import drop_session
from fake_board import FakeBoard

from cloud.db.migrate import migration_files

REPO = Path(__file__).resolve().parents[2]
ALL = [p.name for p in migration_files()]


class Proc:
    """A child process whose stderr lines are collected by a thread (nothing blocks on a pipe)."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.p = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.p.stderr is not None
        for line in self.p.stderr:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def sigint(self, timeout: float = 30) -> int:
        self.p.send_signal(signal.SIGINT)
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError("did not stop within 30 s of SIGINT:\n" + self.output()) from None
        self._reader.join(5)
        return rc

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def _migrations(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


def _has_table(url: str, name: str) -> bool:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone() == (True,)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_python_m_cloud_ingest_migrates_an_empty_database_then_ingests(
    empty_database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int]
) -> None:
    assert not _has_table(empty_database_url, "schema_migrations")
    client_id = f"ingest-{topic_prefix}"
    proc = Proc(
        "cloud.ingest",
        {
            "QADAM_DATABASE_URL": empty_database_url,
            "QADAM_MQTT_HOST": mqtt_addr[0],
            "QADAM_MQTT_PORT": str(mqtt_addr[1]),
            "QADAM_TOPIC_PREFIX": topic_prefix,
            "QADAM_INGEST_CLIENT_ID": client_id,
            "QADAM_INGEST_FLUSH_MS": "20",
        },
    )
    board = None
    try:
        deadline = time.monotonic() + 60
        msgs: list[str] = []
        while "mqtt subscribed" not in msgs and time.monotonic() < deadline:
            assert proc.p.poll() is None, "ingest exited:\n" + proc.output()
            msgs = [json.loads(line)["msg"] for line in list(proc.lines) if line.startswith("{")]
            time.sleep(0.05)
        assert "mqtt subscribed" in msgs, "ingest never subscribed:\n" + proc.output()
        # The migrations ran on start, before the ingest connected, and every one is recorded.
        assert f"schema up to date applied={len(ALL)}" in msgs
        assert msgs.index(f"schema up to date applied={len(ALL)}") < msgs.index("mqtt connected")
        assert _migrations(empty_database_url) == ALL

        # And it works on the schema it created: an unknown device's batch is quarantined and
        # acked (D4), so the board's journal drains.
        board = FakeBoard(mqtt_addr[0], mqtt_addr[1], topic_prefix, "ghost-1", "00" * 8)
        board.tap(3)
        while board.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert board.pending() == 0, "no ack from the ingest:\n" + proc.output()
        with psycopg.connect(empty_database_url) as conn:
            rows = conn.execute("SELECT device_id, reason, first_seq, last_seq FROM quarantine")
            assert rows.fetchall() == [("ghost-1", "unknown_device", 1, 3)]

        rc = proc.sigint()
        assert rc == 0, proc.output()
        assert "Traceback" not in proc.output()
    finally:
        if board is not None:
            board.close()
        proc.kill()
        drop_session(mqtt_addr[0], mqtt_addr[1], client_id)


def test_python_m_cloud_api_migrates_an_empty_database_then_serves(
    empty_database_url: str,
) -> None:
    assert not _has_table(empty_database_url, "events")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc(
        "cloud.api",
        {
            "QADAM_DATABASE_URL": empty_database_url,
            "QADAM_HTTP_HOST": "127.0.0.1",
            "QADAM_HTTP_PORT": str(port),
        },
    )
    try:
        deadline = time.monotonic() + 60
        status = None
        while status is None and time.monotonic() < deadline:
            assert proc.p.poll() is None, "API exited:\n" + proc.output()
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5) as resp:
                    status = resp.status
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        assert status == 200, "API never answered /healthz:\n" + proc.output()
        assert _migrations(empty_database_url) == ALL
        assert _has_table(empty_database_url, "events")
        with urllib.request.urlopen(base + "/api/v1/events", timeout=5) as resp:
            assert resp.status == 200
            assert json.load(resp)["total"] == 0  # the events query runs on the new schema

        rc = proc.sigint()
        assert rc == 0, proc.output()
        assert "Traceback" not in proc.output()
    finally:
        proc.kill()
