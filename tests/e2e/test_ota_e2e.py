"""OTA end to end (issue #14 item 6, must-show): 10 virtual boards flashed with the OTA layout
(simulator/ota_board.py: the real firmware in the MicroPython VM, booting from its flash's
slots), the real Mosquitto, ingest and OTA worker, releases built and signed by `qadam release`.

A bad release (its firmware never receives an ack: the ack topic is broken) is rolled out with 2
canaries: each downloads it, checks the signature, boots it on trial, gets no ack, restarts,
and after its trial boots goes back to its previous image; the rollout pauses and the 8 others
are never offered it. The rollout is cancelled and a good release goes to all 10: the canaries
confirm it (the cloud's ack of their trial), then the rest get it; every board ends on it."""

from __future__ import annotations

import base64
import hashlib
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.domain import registry
from cloud.ingest.service import Ingest
from cloud.ota import releases, rollouts
from cloud.settings import Settings
from cloud.workers.ota_push import OtaPush
from simulator.board import FIRMWARE, BoardConfig
from simulator.ota_board import OtaBoard
from tools.release import build_image, public_key, sign

pytestmark = pytest.mark.slow

KEY_SEED = hashlib.sha256(b"qadam e2e release key").digest()
SITE_KEY = b"s" * 32
N = 10
CANARIES = 2


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(KEY_SEED)


def _firmware(tmp: Path, name: str, edit: Callable[[Path], None]) -> Path:
    root = tmp / name
    shutil.copytree(FIRMWARE, root, ignore=shutil.ignore_patterns("__pycache__"))
    edit(root)
    return root


def _break_acks(root: Path) -> None:
    p = root / "net" / "sync.py"
    src = p.read_text()
    assert 'self.t_ack = topic(prefix, device, "ack")' in src
    p.write_text(src.replace('topic(prefix, device, "ack")', 'topic(prefix, device, "ack-x")'))


def _mark_good(root: Path) -> None:
    p = root / "net" / "sync.py"
    p.write_text(p.read_text().replace('FW_VERSION = "0.1.0"', 'FW_VERSION = "0.2.0"'))


class Fleet:
    """The boards, and a thread that powers on again every board whose firmware restarted it
    (a reset: exit code 75, or any exit while the test has not stopped it)."""

    def __init__(self, boards: list[OtaBoard]) -> None:
        self.boards = boards
        self.restarts = {b.config.device: 0 for b in boards}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        for b in self.boards:
            b.write_flash(None)
            b.start(wait=60)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            for b in self.boards:
                if not b.running and not self._stop.is_set():
                    b.power_cut()  # reap the process and its reader
                    self.restarts[b.config.device] += 1
                    try:
                        b.start(wait=60)
                    except Exception:
                        pass  # it exited again at once: the next turn powers it on again
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for b in self.boards:
            b.stop()


def _wait(what: str, pred: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, f"timed out waiting for {what}"
        time.sleep(0.25)
    return time.monotonic() - t0


def _firmware_rows(url: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = rollouts.fleet(conn, None)
    return {r["device_id"]: r for r in rows}


@pytest.fixture
def world(database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int],
          tmp_path: Path) -> Iterator[tuple[Fleet, Settings, str]]:  # fmt: skip
    pub = public_key(_key())
    settings = Settings(database_url=database_url, mqtt_host=mqtt_addr[0],
                        mqtt_port=mqtt_addr[1], topic_prefix=topic_prefix,
                        ingest_client_id=f"ingest-{topic_prefix}", ota_public_key=pub,
                        ota_poll_ms=250, ota_canary_deadline_s=120)  # fmt: skip
    devices = [f"ota-{i:02d}" for i in range(N)]
    with psycopg.connect(database_url) as conn:
        registry.create_school(conn, "sk1", "School 1", SITE_KEY)
        for d in devices:
            registry.register_device(conn, d, "sk1", "entrance", "door", "mfrc522")
    boards = [
        OtaBoard(BoardConfig(d, "sk1", SITE_KEY, mqtt_host=mqtt_addr[0], mqtt_port=mqtt_addr[1],
                             prefix=topic_prefix,
                             extra={"ota_pub": pub, "ota_trial_s": 6, "ota_tries": 2,
                                    "heartbeat_s": 10}),
                 tmp_path / d)
        for d in devices
    ]  # fmt: skip
    with running(settings, boards) as fleet:
        yield fleet, settings, database_url


@contextmanager
def running(settings: Settings, boards: list[Any]) -> Iterator[Fleet]:
    """The real ingest and OTA worker, then the boards; stopped in the reverse order."""
    ingest = Ingest(settings)
    ota = OtaPush(settings)
    fleet = Fleet(boards)
    ingest.start()
    ota.start()
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()
        ota.stop()
        ingest.stop()


def test_bad_release_rolls_back_on_the_canaries_and_a_good_one_reaches_all(
    world: tuple[Fleet, Settings, str], tmp_path: Path
) -> None:
    fleet, settings, url = world
    devices = [b.config.device for b in fleet.boards]
    key = _key()
    bad = sign(key, "0.2.0-bad", build_image(_firmware(tmp_path, "bad", _break_acks)))
    good = sign(key, "0.2.0", build_image(_firmware(tmp_path, "good", _mark_good)))
    _wait("every board online on slot a",
          lambda: all(r["online"] and r["slot"] == "a" for r in _firmware_rows(url).values()),
          60)  # fmt: skip

    with psycopg.connect(url) as conn:
        for doc in (bad, good):
            releases.publish(conn, settings.ota_public_key, doc["version"],
                             base64.b64decode(doc["image_b64"]), doc["sha256"],
                             doc["signature"], "", "e2e")  # fmt: skip
        ro = rollouts.create(conn, "0.2.0-bad", devices, devices[:CANARIES], 120, "e2e")
    t_bad = _wait("the bad rollout to pause", lambda: _rollout(url, ro["id"])["state"] == "paused",
                  180)  # fmt: skip
    # The first canary's rollback paused it; the other canary gets there on its own.
    _wait("both canaries to roll back", lambda: all(
        t["state"] == "rolled_back" for t in _rollout(url, ro["id"])["targets"] if t["canary"]),
        60)  # fmt: skip
    r = _rollout(url, ro["id"])
    assert r["state"] == "paused" and "rolled_back" in r["paused_reason"], r
    states = {t["device_id"]: t["state"] for t in r["targets"]}
    assert {states[d] for d in devices[CANARIES:]} == {"pending"}, r
    rows = _firmware_rows(url)
    for d in devices[:CANARIES]:
        assert rows[d]["rolled_back"] == "0.2.0-bad" and rows[d]["slot"] == "a", rows[d]
        assert fleet.restarts[d] >= 2  # the activation, then the failed trial boots
    for b in fleet.boards[CANARIES:]:
        assert not (b.flash / "slot_b.rom").exists() and not (b.flash / "ota.part").exists()
        assert rows[b.config.device]["version"] == "0.1.0"

    with psycopg.connect(url) as conn:
        rollouts.cancel(conn, ro["id"], "bad release")
        ro2 = rollouts.create(conn, "0.2.0", devices, devices[:CANARIES], 120, "e2e")
    t0 = time.monotonic()
    _wait("the canaries to confirm the good release",
          lambda: _rollout(url, ro2["id"])["state"] in ("rolling", "done"), 180)
    t_canary = time.monotonic() - t0
    _wait("the good release everywhere", lambda: _rollout(url, ro2["id"])["state"] == "done", 240)
    t_good = time.monotonic() - t0
    rows = _firmware_rows(url)
    assert {rows[d]["version"] for d in devices} == {"0.2.0"}, rows
    assert {rows[d]["trial"] for d in devices} == {None}
    # The new image does the job: a tap on each board reaches the cloud and is acked.
    for i, b in enumerate(fleet.boards):
        assert b.tap(bytes([4, 1, 2, i])) is not None
    for b in fleet.boards:
        b.wait_drained(60)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(DISTINCT device_id) FROM events").fetchone()
    assert row is not None and row[0] == N
    print(f"\nOTA e2e: bad rollout paused after {t_bad:.1f} s; good release on the canaries "
          f"in {t_canary:.1f} s, on all {N} in {t_good:.1f} s; restarts {fleet.restarts}")


def _rollout(url: str, rid: int) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        return rollouts.get(conn, rid)
