"""Fault tests with exact counts: boards (tests/cloud/fake_board.py) keep tapping and re-sending
while the ingest is SIGKILLed, the broker restarts, PostgreSQL restarts, or one of three shared
workers dies. Each run ends with every event stored exactly once (and its derived rows once)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from cloud_helpers import NOTED_TAPS, drop_session
from fake_board import FakeBoard, tap_until

from cloud.db.migrate import apply
from cloud.domain import registry
from cloud.ingest.service import Ingest
from cloud.settings import Settings

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO = "/usr/sbin/mosquitto"
CARD = "0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _count(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else 0


def _seed(url: str, devices: list[str]) -> None:
    with psycopg.connect(url) as conn:
        registry.create_school(conn, "f1", "Fault School", b"k" * 32)
        person = registry.add_person(conn, "f1", "student", "Dana")
        registry.add_card(conn, person, CARD)
        for d in devices:
            registry.register_device(conn, d, "f1", d, "turnstile", "mfrc522")


def _boards(host: str, port: int, prefix: str, devices: list[str]) -> list[FakeBoard]:
    return [
        FakeBoard(host, port, prefix, d, CARD, boot=3, batch_max=32, ack_timeout=0.5)
        for d in devices
    ]


def _drain_and_check(url: str, boards: list[FakeBoard], stop: threading.Event,
                     tapper: threading.Thread, timeout: float = 60) -> int:  # fmt: skip
    stop.set()
    tapper.join(5)
    _wait(lambda: all(b.pending() == 0 for b in boards), timeout, "boards to drain")
    created = sorted(i for b in boards for i in b.created)
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT device_id, boot, seq FROM events").fetchall()
        outbox = conn.execute(
            "SELECT count(*) FILTER (WHERE kind = 'social_wallet'),"
            " count(*), count(DISTINCT idempotency_key) FROM outbox"
        )
        n_wallet, n_outbox, n_keys = outbox.fetchone() or (0, 0, 0)
        # parent notifications: runs of taps per row (D18, D22); list every tap they carry
        notified = conn.execute(
            "SELECT o.payload->>'device_id', (o.payload->>'boot')::bigint, t.seq"
            f" FROM {NOTED_TAPS} WHERE o.kind = 'parent_notification'"
        ).fetchall()
        n_notes = conn.execute(
            "SELECT count(*) FROM outbox WHERE kind = 'parent_notification'"
        ).fetchone()
        meals = conn.execute("SELECT count(*) FROM meal_receipts").fetchone()
        passages = conn.execute("SELECT coalesce(sum(passages), 0) FROM attendance").fetchone()
    stored_ids = sorted((str(d), int(b), int(s)) for d, b, s in stored)
    assert len(stored_ids) == len(set(stored_ids)), "an event was stored twice"
    assert stored_ids == created, "stored events differ from the events the boards created"
    # every event is a granted tap of a known person: derived rows exactly once too
    canteen = sum(1 for _, _, s in created if s % 3 == 2)
    # one parent notification per tap, one Social Wallet record per meal, each exactly once
    assert sorted((str(d), int(b), int(s)) for d, b, s in notified) == created
    assert n_wallet == canteen
    assert n_notes is not None
    assert n_outbox == n_keys == n_notes[0] + canteen
    assert meals is not None and meals[0] == canteen
    assert passages is not None and passages[0] == len(created) - canteen
    for b in boards:
        b.close()
    return len(created)


def _worker_env(url: str, host: str, port: int, prefix: str, client_id: str,
                group: str | None = None) -> dict[str, str]:  # fmt: skip
    env = dict(
        os.environ,
        QADAM_DATABASE_URL=url,
        QADAM_MQTT_HOST=host,
        QADAM_MQTT_PORT=str(port),
        QADAM_TOPIC_PREFIX=prefix,
        QADAM_INGEST_CLIENT_ID=client_id,
        QADAM_INGEST_FLUSH_MS="20",
        QADAM_INSECURE_DEV="1",  # a test broker without accounts: refused without it
        PYTHONPATH=str(REPO),
    )
    if group:
        env["QADAM_INGEST_SHARED_GROUP"] = group
    return env


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen([sys.executable, "-m", "cloud.ingest"], env=env, cwd=REPO,
                                stdin=subprocess.DEVNULL, stdout=f, stderr=f)  # fmt: skip


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)


class _Mosquitto:
    """A private mosquitto on a free port with on-disk persistence (restartable)."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.dir = tmp / "mosquitto"
        self.dir.mkdir()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            f"persistence true\npersistence_location {self.dir}/\n"
            "max_queued_messages 100000\nmax_inflight_messages 100\n"
            f"log_dest file {self.dir}/mosquitto.log\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "mosquitto exited"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        _wait(up, 10, "mosquitto to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def devices() -> list[str]:
    return [f"fb-{i}" for i in range(4)]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[_Mosquitto]:
    m = _Mosquitto(tmp_path)
    m.start()
    yield m
    m.stop()


@pytest.mark.parametrize("write_path", ["default", "bulk"])
def test_ingest_sigkilled_ten_times(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int], devices: list[str],
    tmp_path: Path, write_path: str,
) -> None:  # fmt: skip
    _seed(database_url, devices)
    client_id = f"ingest-{topic_prefix}"
    env = _worker_env(database_url, *mqtt_addr, topic_prefix, client_id)
    if write_path == "bulk":
        # every flush tries the bulk path (D18); where a redelivered message meets stored events
        # it gives way to the deduping statement (tests/cloud/test_ingest_bulk.py forces that)
        env["QADAM_INGEST_BULK_MIN"] = "1"
    log = tmp_path / "ingest.log"
    boards = _boards(*mqtt_addr, topic_prefix, devices)
    stop = threading.Event()
    proc = _spawn(env, log)
    try:
        tapper = tap_until(boards, stop)
        for _ in range(10):
            before = max(_count(database_url), 0)
            _wait(lambda b=before: _count(database_url) > b, 30, "the ingest to store something")
            assert proc.poll() is None, log.read_text()[-2000:]
            _kill(proc)
            proc = _spawn(env, log)
        n = _drain_and_check(database_url, boards, stop, tapper)
        assert n > 100
        flushes = [json.loads(line) for line in log.read_text().splitlines()
                   if line.startswith("{") and '"msg":"ingest flush"' in line]  # fmt: skip
        assert flushes and any(f["bulk"] for f in flushes) is (write_path == "bulk")
    finally:
        stop.set()
        _kill(proc)
        drop_session(*mqtt_addr, client_id)


def test_broker_restarts(
    database_url: str, topic_prefix: str, devices: list[str], mosquitto: _Mosquitto
) -> None:
    _seed(database_url, devices)
    s = Settings(database_url=database_url, mqtt_port=mosquitto.port, topic_prefix=topic_prefix,
                 ingest_client_id="ingest-broker-restart", ingest_flush_ms=20)  # fmt: skip
    ing = Ingest(s)
    ing.start()
    boards = _boards("127.0.0.1", mosquitto.port, topic_prefix, devices)
    stop = threading.Event()
    try:
        assert ing.wait_ready(10)
        tapper = tap_until(boards, stop)
        for _ in range(2):
            before = max(_count(database_url), 0)
            _wait(lambda b=before: _count(database_url) > b + 20, 30, "progress")
            mosquitto.stop()
            time.sleep(0.5)  # boards keep tapping into their journals meanwhile
            mosquitto.start()
        _wait(lambda: _count(database_url) > before + 60, 30, "progress after the restart")
        _drain_and_check(database_url, boards, stop, tapper)
    finally:
        stop.set()
        ing.stop()


def test_database_restarts(
    topic_prefix: str, mqtt_addr: tuple[str, int], devices: list[str], tmp_path: Path
) -> None:
    from tools.services import EmbeddedPostgres

    pg = EmbeddedPostgres(tmp_path / "pg", port=_free_port(), dbname="qadam").start()
    url = pg.url("qadam")
    apply(url)
    _seed(url, devices)
    client_id = f"ingest-{topic_prefix}"
    s = Settings(database_url=url, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
                 topic_prefix=topic_prefix, ingest_client_id=client_id,
                 ingest_flush_ms=20)  # fmt: skip
    ing = Ingest(s)
    ing.start()
    boards = _boards(*mqtt_addr, topic_prefix, devices)
    stop = threading.Event()
    try:
        assert ing.wait_ready(10)
        tapper = tap_until(boards, stop)
        _wait(lambda: _count(url) > 50, 30, "progress")
        pg.stop()
        time.sleep(0.5)
        pg = EmbeddedPostgres(tmp_path / "pg", port=pg.port, dbname="qadam").start()
        before = _count(url)
        _wait(lambda: _count(url) > before + 60, 30, "progress after the restart")
        assert ing.stats["db_errors"] >= 1
        _drain_and_check(url, boards, stop, tapper)
    finally:
        stop.set()
        ing.stop()
        pg.stop()
        drop_session(*mqtt_addr, client_id)


@pytest.mark.parametrize("write_path", ["default", "bulk"])
def test_three_shared_workers_one_killed(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int], devices: list[str],
    tmp_path: Path, write_path: str,
) -> None:  # fmt: skip
    _seed(database_url, devices)
    group = f"g{uuid.uuid4().hex[:8]}"
    ids = [f"ingest-{topic_prefix}-{i}" for i in range(3)]
    envs = [_worker_env(database_url, *mqtt_addr, topic_prefix, cid, group) for cid in ids]
    for env in envs:
        if write_path == "bulk":  # three processes racing on the same keys: the savepoint path
            env["QADAM_INGEST_BULK_MIN"] = "1"
    procs = [_spawn(env, tmp_path / f"{cid}.log") for env, cid in zip(envs, ids, strict=True)]
    boards = _boards(*mqtt_addr, topic_prefix, devices)
    stop = threading.Event()
    try:
        tapper = tap_until(boards, stop)

        def all_flushed() -> bool:
            return all("ingest flush" in (tmp_path / f"{cid}.log").read_text() for cid in ids)

        _wait(all_flushed, 60, "every worker to store a share")  # so the kill lands mid-run
        _kill(procs[0])
        before = _count(database_url)
        _wait(lambda: _count(database_url) > before + 200, 30, "progress without worker 0")
        _drain_and_check(database_url, boards, stop, tapper)
        assert all(p.poll() is None for p in procs[1:]), "a surviving worker died"
    finally:
        stop.set()
        for p in procs:
            _kill(p)
        for cid in ids:
            drop_session(*mqtt_addr, cid)
