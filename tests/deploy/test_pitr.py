"""Restore to a point in time (issue #18 "Backups and restore", D29-A).

A PostgreSQL 15 cluster of the test's own archives its WAL with deploy/backup/archive-wal.sh
(1 MiB segments, so a short run spans several), gets our migrations, and is backed up with
`qadam backup base`. A board then sends taps through the real ingest (Mosquitto, the ingest
service, its commit-then-ack); the test notes when each batch was sent and when its ack came.
It picks T between two acks, lets the board go on, archives the rest, and restores the backup
plus the archive to T into a new data directory with `qadam backup restore`: every tap acked
before T is in the restored database, none sent after T is (its commit came after T). A tap sent
before T and acked after it may fall either way; the test says how many did.

Then what must fail, fails clearly and writes nothing: a hole in the archive, a damaged segment,
a target past the archive's end or before the first backup; and a segment damaged inside an
intact gzip (which only PostgreSQL can see) makes the restored server refuse to open."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from own_postgres import PG_BIN, OwnCluster, give_to_server_user
from paho.mqtt.enums import CallbackAPIVersion
from psycopg import sql

from cloud.backup import restore as pitr
from cloud.backup.base import list_backups
from cloud.backup.walarchive import BackupError, Segment, archived_segments
from cloud.db.migrate import apply
from cloud.domain import registry
from cloud.ingest.service import Ingest
from cloud.settings import Settings

REPO = Path(__file__).resolve().parents[2]
QADAM = [str(REPO / ".venv/bin/python"), "-m", "tools.cli"]
SCRIPTS = REPO / "deploy/backup"
MQTT_HOST = os.environ.get("QADAM_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("QADAM_TEST_MQTT_PORT", "1883"))
BATCHES = 60  # two taps each, one batch every 40 ms: ~2.4 s of taps
CARD = "0123456789abcdef"


@dataclass
class History:
    work: Path
    backups: Path  # wal/ and base/
    target: datetime  # T
    acked_at: dict[int, float]  # batch -> when its ack reached the board
    sent_at: dict[int, float]  # batch -> when the board published it
    stored: set[int]  # batches in the primary at the end
    early_segment: str  # the segment that got batches 15 to 29 (most acked before T)
    primary: str  # the primary's URL (still running)
    restore_script: Path  # restore-wal.sh, where the server's user can run it


def _qadam(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*QADAM, *args], capture_output=True, text=True, timeout=120, cwd=REPO)


class _Board:
    """Plays a board: publishes batches of taps, notes when each batch's ack arrives."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.acked_at: dict[int, float] = {}
        self.sent_at: dict[int, float] = {}
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311
        )
        self.client.on_message = self._on_ack
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(MQTT_HOST, MQTT_PORT, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(f"{prefix}/v1/dev/gate-1/ack", qos=1)
        assert self._subscribed.wait(10), "the board could not subscribe"

    def _on_ack(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        at = time.time()
        ack = json.loads(msg.payload)
        with self._lock:
            for seq in range(ack["first"], ack["last"] + 1):
                self.acked_at.setdefault((seq - 1) // 2, at)

    def send(self, batch: int) -> None:
        events = [
            {
                "boot": 1,
                "seq": seq,
                "t": int(time.time()),
                "sync": 1,
                "up": 1000 * seq,
                "kind": "tap",
                "reader": "in",
                "card": CARD,
                "result": "granted",
                "reason": "ok",
            }
            for seq in (2 * batch + 1, 2 * batch + 2)
        ]
        doc = {"v": 1, "dev": "gate-1", "boot": 1, "events": events}
        self.sent_at[batch] = time.time()
        self.client.publish(f"{self.prefix}/v1/dev/gate-1/events", json.dumps(doc), qos=1)

    def wait_all_acked(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked_at) < n:
            assert time.monotonic() < deadline, f"{len(self.acked_at)} of {n} batches acked"
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _stored_batches(url: str) -> set[int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT seq FROM events WHERE device_id = 'gate-1'").fetchall()
    seqs = {int(r[0]) for r in rows}
    return {(s - 1) // 2 for s in seqs if s % 2 == 1 and s + 1 in seqs}


def _switch_and_wait_archived(url: str) -> None:
    """Close the current WAL segment and wait until the archiver has stored it."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        assert row is not None
        deadline = time.monotonic() + 20
        while True:
            got = conn.execute("SELECT last_archived_wal FROM pg_stat_archiver").fetchone()
            if got and got[0] and got[0] >= row[0]:
                return
            assert time.monotonic() < deadline, f"{row[0]} never archived"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def history() -> Iterator[History]:
    # outside pytest's private (0700) base directory: the server's user must reach it
    work = Path(tempfile.mkdtemp(prefix="qadam-pitr-"))
    backups = work / "backups"
    (backups / "wal").mkdir(parents=True)
    # the scripts copied where the server's user reaches them (a checkout may be in /root)
    for name in ("archive-wal.sh", "restore-wal.sh"):
        shutil.copy2(SCRIPTS / name, work / name)
    give_to_server_user(work)
    archive = f"{work / 'archive-wal.sh'} %p %f {backups / 'wal'}"
    primary = OwnCluster(work / "primary")
    try:
        primary.initdb(
            "wal_level = replica\narchive_mode = on\n"
            f"archive_command = '{archive}'\n"
            "fsync = off\n"  # no power cut here: the data's own syncs only cost time
        )
        r = primary.start()
        assert r.returncode == 0, r.stderr + primary.log_text()
        with psycopg.connect(primary.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE qadam")
        url = primary.url("qadam")
        apply(url)
        with psycopg.connect(url) as conn:
            registry.create_school(conn, "s1", "School 1", b"k" * 32)
            registry.register_device(conn, "gate-1", "s1", "main entrance", "turnstile", "mfrc522")
            alice = registry.add_person(conn, "s1", "student", "Alice Aliyeva")
            registry.add_card(conn, alice, CARD)

        r = _qadam(
            "backup",
            "base",
            "--dir",
            str(backups),
            "--host",
            "127.0.0.1",
            "--port",
            str(primary.port),
            "--user",
            "postgres",
            "--pg-bindir",
            str(PG_BIN),
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "verified" in r.stdout

        prefix = f"t{uuid.uuid4().hex[:10]}"
        ingest = Ingest(
            Settings(
                database_url=url,
                mqtt_host=MQTT_HOST,
                mqtt_port=MQTT_PORT,
                topic_prefix=prefix,
                ingest_client_id=f"ingest-{prefix}",
                ingest_flush_ms=20,
            )
        )
        ingest.start()
        board = _Board(prefix)
        try:
            assert ingest.wait_ready(10), "the ingest did not subscribe"
            for batch in range(BATCHES):
                board.send(batch)
                if batch in (14, 44):  # a few segments to replay, one archived well before T
                    _switch_and_wait_archived(url)
                elif batch == 21:
                    with psycopg.connect(url) as conn:
                        row = conn.execute("SELECT pg_walfile_name(pg_current_wal_lsn())")
                        early = str(row.fetchone()[0])  # type: ignore[index]
                elif batch == 29:
                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute("SELECT pg_switch_wal()")
                time.sleep(0.04)
            board.wait_all_acked(BATCHES)
        finally:
            board.close()
            ingest.stop()
        # T: half-way between the acks of the middle two batches
        acks = sorted(board.acked_at.values())
        mid = len(acks) // 2
        target = datetime.fromtimestamp((acks[mid - 1] + acks[mid]) / 2, UTC)
        _switch_and_wait_archived(url)
        stored = _stored_batches(url)
        yield History(
            work,
            backups,
            target,
            dict(board.acked_at),
            dict(board.sent_at),
            stored,
            early,
            primary.url(),
            work / "restore-wal.sh",
        )
    finally:
        primary.stop()
        shutil.rmtree(work, ignore_errors=True)


def _copy_backups(h: History, name: str) -> Path:
    """A copy of the WAL archive to spoil; the base backups are shared (only read)."""
    copy = h.work / name
    shutil.copytree(h.backups / "wal", copy / "wal")
    (copy / "base").symlink_to(h.backups / "base")
    give_to_server_user(copy)  # its restore_command reads it
    return copy


def _segments_between(backups: Path, h: History) -> list[Path]:
    """Archived segments after the base backup's start and archived before T."""
    start = list_backups(backups)[0].start_segment
    return [
        p
        for s, p in sorted(archived_segments(backups / "wal").items())
        if s > start and p.stat().st_mtime < h.target.timestamp()
    ]


def test_restore_to_a_point_in_time_keeps_every_event_acked_before_it(history: History) -> None:
    h = history
    assert h.stored == set(range(BATCHES))  # the primary has every batch
    data = h.work / "restored"
    r = _qadam(
        "backup",
        "restore",
        "--dir",
        str(h.backups),
        "--to",
        h.target.isoformat(),
        "--data-dir",
        str(data),
        "--restore-script",
        str(h.restore_script),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    give_to_server_user(data)
    restored = OwnCluster(data)
    restored.configure(
        "archive_mode = off\nfsync = off"
    )  # this test's archive stays as it was made
    try:
        r = restored.start()
        assert r.returncode == 0, r.stderr + restored.log_text()
        assert restored.wait_replayed(), restored.log_text()[-3000:]
        got = _stored_batches(restored.url("qadam"))
        log = restored.log_text()
    finally:
        restored.stop()
    t = h.target.timestamp()
    acked_before = {b for b, at in h.acked_at.items() if at < t}
    sent_after = {b for b, at in h.sent_at.items() if at > t}
    either = set(range(BATCHES)) - acked_before - sent_after
    print(
        f"PITR: {len(acked_before)} batches acked before T all restored, {len(sent_after)} "
        f"sent after T none restored, {len(either)} in flight at T ({len(either & got)} kept)"
    )
    assert acked_before and sent_after  # T really is in the middle
    assert acked_before <= got, sorted(acked_before - got)
    assert not (sent_after & got), sorted(sent_after & got)
    assert "recovery stopping before commit" in log, log[-2000:]
    assert "selected new timeline ID: 2" in log


def test_restore_to_latest_has_every_event(history: History) -> None:
    """After a disaster there is no commit after "now" to stop at: `--to latest` replays all."""
    data = history.work / "restored-latest"
    r = _qadam(
        "backup",
        "restore",
        "--dir",
        str(history.backups),
        "--to",
        "latest",
        "--data-dir",
        str(data),
        "--restore-script",
        str(history.restore_script),
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "recovery_target_time =" not in (data / "postgresql.auto.conf").read_text()
    # as root, the copy belongs to the owner of the directory it is in (the server's user)
    assert data.stat().st_uid == data.parent.stat().st_uid
    assert (data / "global/pg_control").stat().st_uid == data.parent.stat().st_uid
    restored = OwnCluster(data)
    restored.configure("archive_mode = off\nfsync = off")
    try:
        r = restored.start()
        assert r.returncode == 0 and restored.wait_replayed(), restored.log_text()[-3000:]
        assert _stored_batches(restored.url("qadam")) == set(range(BATCHES))
    finally:
        restored.stop()


def test_a_hole_in_the_archive_is_refused_and_nothing_is_written(history: History) -> None:
    backups = _copy_backups(history, "holed")
    between = _segments_between(backups, history)
    assert between, "no segment between the backup and T"
    between[0].unlink()
    data = history.work / "not-restored-hole"
    with pytest.raises(BackupError, match=f"{between[0].name[:24]} is missing from the archive"):
        pitr.restore(backups, history.target, data, history.restore_script)
    assert not data.exists()
    r = _qadam("backup", "check", "--dir", str(backups), "--pg-bindir", str(PG_BIN), "--no-server")
    assert r.returncode == 1 and "a hole" in r.stderr, r.stdout + r.stderr


def test_a_damaged_segment_is_refused(history: History) -> None:
    backups = _copy_backups(history, "damaged")
    victim = _segments_between(backups, history)[-1]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # a flipped byte inside the compressed stream
    victim.write_bytes(bytes(raw))
    data = history.work / "not-restored-damage"
    data.mkdir()
    with pytest.raises(BackupError, match=f"{victim.name} in the archive is damaged"):
        pitr.restore(backups, history.target, data, history.restore_script)
    assert list(data.iterdir()) == []


def test_targets_outside_the_archive_are_refused(history: History) -> None:
    data = history.work / "not-restored-time"
    later = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(BackupError, match="before the target time"):
        pitr.restore(history.backups, later, data, history.restore_script)
    first = list_backups(history.backups)[0]
    earlier = datetime.fromtimestamp(first.started_at - 60, UTC)
    with pytest.raises(BackupError, match="no base backup finished before"):
        pitr.restore(history.backups, earlier, data, history.restore_script)
    r = _qadam(
        "backup",
        "restore",
        "--dir",
        str(history.backups),
        "--to",
        "2026-12-07T09:00",
        "--data-dir",
        str(data),
    )
    assert r.returncode == 1 and "has no time zone" in r.stderr
    assert not data.exists()


def test_wal_damaged_inside_an_intact_file_stops_the_restored_server(history: History) -> None:
    """gzip's CRC covers what was archived; a segment damaged before archiving (or rewritten)
    passes it. PostgreSQL's own record CRCs catch it: replay ends early and the server refuses
    to open rather than come up short of the target."""
    backups = _copy_backups(history, "rewritten")
    victim = backups / "wal" / f"{history.early_segment}.gz"
    assert victim.exists()
    wal = bytearray(gzip.decompress(victim.read_bytes()))
    wal[40:] = bytes(len(wal) - 40)  # all but the segment's page header: zeros
    victim.write_bytes(gzip.compress(bytes(wal)))
    data = history.work / "restored-short"
    pitr.restore(backups, history.target, data, history.restore_script)  # the file itself is intact
    give_to_server_user(data)
    restored = OwnCluster(data)
    restored.configure("archive_mode = off\nfsync = off")
    try:
        r = restored.start(timeout=20)
        opened = r.returncode == 0 and restored.wait_replayed()
        log = restored.log_text()
    finally:
        restored.stop()
    assert not opened, "the server opened short of the target:\n" + log[-3000:]
    assert "recovery ended before configured recovery target was reached" in log, log[-2000:]


def test_check_reports_a_good_archive(history: History) -> None:
    r = _qadam(
        "backup",
        "check",
        "--dir",
        str(history.backups),
        "--pg-bindir",
        str(PG_BIN),
        "--database",
        history.primary,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no hole, none damaged" in r.stdout
    assert "server archiver: " in r.stdout
    first = list_backups(history.backups)[0].start_segment
    assert f"segments {first.name}.." in r.stdout
    assert Segment.parse(first.name) == first


def test_check_says_when_archiving_fails(history: History) -> None:
    """Last: it breaks the primary's archiving for a moment (and mends it)."""
    with psycopg.connect(history.primary, autocommit=True) as conn:
        row = conn.execute("SHOW archive_command").fetchone()
        assert row is not None
        mended = sql.SQL("ALTER SYSTEM SET archive_command = {}").format(sql.Literal(row[0]))
        conn.execute("ALTER SYSTEM SET archive_command = '/bin/false'")
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)  # the archiver rereads its configuration
        conn.execute("CREATE TABLE after_the_run (x int)")
        conn.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 20
        try:
            while conn.execute("SELECT failed_count FROM pg_stat_archiver").fetchone() == (0,):
                assert time.monotonic() < deadline, "the archiver never failed"
                time.sleep(0.1)
            r = _qadam(
                "backup",
                "check",
                "--dir",
                str(history.backups),
                "--pg-bindir",
                str(PG_BIN),
                "--database",
                history.primary,
            )
        finally:
            conn.execute(mended)
            conn.execute("SELECT pg_reload_conf()")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "WAL archiving is failing: 0000000" in r.stderr
    r = _qadam(
        "backup",
        "check",
        "--dir",
        str(history.backups),
        "--pg-bindir",
        str(PG_BIN),
        "--database",
        "host=127.0.0.1 port=1 connect_timeout=2",
    )
    assert r.returncode == 1 and "cannot ask the server about archiving" in r.stderr
