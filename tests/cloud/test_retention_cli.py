"""`qadam retention` as a process (D29-B): the dry run lists and changes nothing; a run killed
between the archive and the drop (or while archiving) leaves the month online and the next run
finishes it; `restore YYYY-MM` loads a month back and refuses what it cannot."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cloud_helpers import Seed, batch_doc, dumps, topic

from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import write

REPO = Path(__file__).resolve().parents[2]


def _batch(seqs: list[int], t: int) -> Batch:
    doc = batch_doc(seqs=seqs)
    for i, ev in enumerate(doc["events"]):
        ev["t"] = t + i
    got = decode(topic("qadam", "gate-1"), dumps(doc))
    assert isinstance(got, Batch)
    return got


@pytest.fixture
def conn(database_url: str, seed: Seed) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute("SELECT ensure_event_partitions('2021-03-01Z', '2021-04-01Z')")
        write(c, [_batch([1, 2, 3], int(datetime(2021, 3, 10, tzinfo=UTC).timestamp()))])
        write(c, [_batch([4], int(datetime(2021, 4, 10, tzinfo=UTC).timestamp()))])
        yield c


def _env(database_url: str, archive: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QADAM_")}
    env.update(
        QADAM_DATABASE_URL=database_url,
        QADAM_RETENTION_ARCHIVE_DIR=str(archive),
        PYTHONPATH=str(REPO),
        **extra,
    )
    return env


def _qadam(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "retention", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _attached(conn: Any, name: str) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass"
            " AND inhrelid = to_regclass(%s)",
            (name,),
        ).fetchone()[0]
    )


def _state(conn: Any, month: str) -> str | None:
    row = conn.execute(
        "SELECT state FROM event_archives WHERE month = %s::date", (month + "-01",)
    ).fetchone()
    return None if row is None else str(row[0])


def test_dry_run_lists_and_changes_nothing(conn: Any, database_url: str, tmp_path: Path) -> None:
    env = _env(database_url, tmp_path / "archive")
    got = _qadam(env, "--dry-run", "--json")
    assert got.returncode == 0, got.stderr
    listed = [json.loads(line) for line in got.stdout.splitlines()]
    assert [(m["month"], m["action"], m["partition"]) for m in listed] == [
        ("2021-03", "archive", "events_p202103"),
        ("2021-04", "archive", "events_p202104"),
    ]
    text = _qadam(env, "--dry-run")
    assert "keep 37 months online" in text.stdout and "2021-03  archive" in text.stdout
    assert _attached(conn, "events_p202103") and _attached(conn, "events_p202104")
    assert conn.execute("SELECT count(*) FROM event_archives").fetchone()[0] == 0
    assert not (tmp_path / "archive").exists()


def _wait_for(conn: Any, what: str, check: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _waiting_on_lock(conn: Any) -> bool:
    return bool(
        conn.execute(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid"
            " WHERE a.application_name = 'qadam-retention' AND NOT l.granted"
        ).fetchone()[0]
    )


def test_killed_between_archive_and_drop(conn: Any, database_url: str, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    env = _env(database_url, archive, QADAM_RETENTION_LOCK_TIMEOUT_S="120")
    with psycopg.connect(database_url) as blocker:
        # a late insert in flight into March: the drop's SHARE lock waits behind it
        blocker.execute("LOCK TABLE events_p202103 IN ROW EXCLUSIVE MODE")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "retention"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for(conn, "the archive", lambda: _state(conn, "2021-03") == "archived")
            _wait_for(conn, "the drop's lock wait", lambda: _waiting_on_lock(conn))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        blocker.rollback()
    assert _attached(conn, "events_p202103") and _state(conn, "2021-03") == "archived"
    assert (archive / "events-2021-03.pgcopy").exists()
    assert conn.execute("SELECT count(*) FROM events_p202103").fetchone()[0] == 3
    done = _qadam(env)
    assert done.returncode == 0, done.stderr
    assert not _attached(conn, "events_p202103") and not _attached(conn, "events_p202104")
    assert (_state(conn, "2021-03"), _state(conn, "2021-04")) == ("dropped", "dropped")
    lines = [json.loads(x) for x in done.stderr.splitlines() if x.startswith("{")]
    assert {(x["msg"], x.get("month")) for x in lines} >= {
        ("retention dropped", "2021-03"),
        ("retention archived", "2021-04"),
        ("retention dropped", "2021-04"),
    }
    # March was archived once, before the kill: the run that finished did not write it again
    assert ("retention archived", "2021-03") not in {(x["msg"], x.get("month")) for x in lines}


def test_killed_while_archiving(conn: Any, database_url: str, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    env = _env(database_url, archive, QADAM_RETENTION_LOCK_TIMEOUT_S="120")
    with psycopg.connect(database_url) as blocker:
        blocker.execute("LOCK TABLE events_p202103 IN ACCESS EXCLUSIVE MODE")
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "retention"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_for(conn, "the archive's lock wait", lambda: _waiting_on_lock(conn))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        blocker.rollback()
    assert _state(conn, "2021-03") is None and _attached(conn, "events_p202103")
    assert not (archive / "events-2021-03.pgcopy").exists()
    done = _qadam(env)
    assert done.returncode == 0, done.stderr
    assert _state(conn, "2021-03") == "dropped"


def test_restore_by_month(conn: Any, database_url: str, tmp_path: Path) -> None:
    env = _env(database_url, tmp_path / "archive")
    april = (
        "SELECT * FROM events WHERE occurred_at >= '2021-04-01Z'"
        " AND occurred_at < '2021-05-01Z' ORDER BY seq"
    )
    before = conn.execute(april).fetchall()
    assert len(before) == 1
    assert _qadam(env).returncode == 0
    bad = _qadam(env, "restore", "2021-13")
    assert bad.returncode == 2 and "YYYY-MM" in bad.stderr
    never = _qadam(env, "restore", "2020-01")
    assert never.returncode == 1 and "never archived" in never.stderr
    (tmp_path / "archive" / "events-2021-03.pgcopy").write_bytes(b"PGCOPY\n\xff\r\n\x00")
    broken = _qadam(env, "restore", "2021-03")
    assert broken.returncode == 1 and "the archive recorded" in broken.stderr
    assert not _attached(conn, "events_p202103")
    assert conn.execute("SELECT to_regclass('events_p202103')").fetchone()[0] is None
    ok = _qadam(env, "restore", "2021-04")
    assert ok.returncode == 0, ok.stderr
    assert "2021-04: 1 rows restored" in ok.stdout
    assert _attached(conn, "events_p202104") and _state(conn, "2021-04") == "restored"
    assert conn.execute(april).fetchall() == before


def test_the_worker_runs_the_job_and_counts_it(
    conn: Any, database_url: str, tmp_path: Path
) -> None:
    with socket.socket() as s:  # a base port with room for the worker's offset above it
        s.bind(("127.0.0.1", 0))
        base = int(s.getsockname()[1]) - 6
    env = _env(
        database_url,
        tmp_path / "archive",
        QADAM_WORKER_OPS_PORT=str(base),
        QADAM_RETENTION_POLL_S="3600",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "worker", "retention"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(conn, "the worker's run", lambda: _state(conn, "2021-04") == "dropped")
        deadline = time.monotonic() + 30
        while True:
            try:
                metrics = httpx.get(f"http://127.0.0.1:{base + 6}/metrics", timeout=5).text
                if "qadam_retention_months_due 0.0" in metrics:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "no retention metrics"
            time.sleep(0.2)
        assert 'qadam_retention_steps_total{outcome="ok",step="drop"} 2.0' in metrics
        assert 'qadam_retention_rows_total{step="archive"} 4.0' in metrics
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert lines and all(x["process"] == "worker.retention" for x in lines), err
    assert {x["msg"] for x in lines} >= {
        "retention plan",
        "retention archived",
        "retention dropped",
        "retention run done",
    }
