"""A tap travels from the firmware in the MicroPython VM through Mosquitto and the ingest into
PostgreSQL, and the ack travels back and empties the board's journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from cloud.ingest.service import Ingest
from cloud.settings import Settings
from simulator.school import SimulatedSchool


def _settings(database_url: str, prefix: str, mqtt_addr: tuple[str, int]) -> Settings:
    return Settings(
        database_url=database_url,
        mqtt_host=mqtt_addr[0],
        mqtt_port=mqtt_addr[1],
        topic_prefix=prefix,
        ingest_client_id=f"ingest-{prefix}",
    )


def _stored_identities(database_url: str) -> list[tuple[str, int, int]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT device_id, boot, seq FROM events").fetchall()
    return [(r[0], int(r[1]), int(r[2])) for r in rows]


def _tapped_identities(school: SimulatedSchool) -> list[tuple[str, int, int]]:
    return [(b.config.device, t["boot"], t["seq"]) for b in school.boards for t in b.taps]


@pytest.fixture
def school(database_url, topic_prefix, mqtt_addr, tmp_path):
    s = SimulatedSchool(
        database_url,
        school="sk1",
        students=60,
        staff=5,
        boards=3,
        mqtt_host=mqtt_addr[0],
        mqtt_port=mqtt_addr[1],
        prefix=topic_prefix,
        state_dir=tmp_path / "boards",
    )
    yield s
    s.stop()


def test_three_boards_tap_100_cards_exactly_once(school, database_url, topic_prefix, mqtt_addr):
    ingest = Ingest(_settings(database_url, topic_prefix, mqtt_addr))
    ingest.start()
    try:
        school.start()
        school.tap_many(100)
        school.wait_drained(60)
    finally:
        ingest.stop()

    tapped = _tapped_identities(school)
    stored = _stored_identities(database_url)
    assert len(tapped) == 100
    assert len(set(tapped)) == 100, "the boards gave two taps the same identity"
    assert sorted(stored) == sorted(tapped)
    for board in school.boards:
        assert board.stat()["journal"] == 0
    # The cloud resolved the people behind the card keys; strangers stay unresolved and denied.
    # (The canteen reader decides by meal period and menu, so only the doors are checked here.)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT person_id IS NOT NULL, reader, result, reason FROM events"
        ).fetchall()
    doors = [(known, result) for known, reader, result, _ in rows if reader != "canteen"]
    assert doors and all((result == "granted") == known for known, result in doors)
    assert all(reason == "unknown_card" for known, _, _, reason in rows if not known)


def _start_ingest_process(database_url: str, prefix: str, mqtt_addr) -> subprocess.Popen:
    env = dict(
        os.environ,
        QADAM_DATABASE_URL=database_url,
        QADAM_MQTT_HOST=mqtt_addr[0],
        QADAM_MQTT_PORT=str(mqtt_addr[1]),
        QADAM_TOPIC_PREFIX=prefix,
        QADAM_INGEST_CLIENT_ID=f"ingest-{prefix}",
        # the machine's Mosquitto lets anonymous clients in: a production start refuses that
        QADAM_INSECURE_DEV="1",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "cloud.ingest"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_ingest_killed_mid_run_loses_and_duplicates_nothing(
    school, database_url, topic_prefix, mqtt_addr
):
    proc = _start_ingest_process(database_url, topic_prefix, mqtt_addr)
    try:
        school.start()
        school.tap_many(40)
        # Wait until the ingest is really consuming, so the kill lands mid-run.
        deadline = time.monotonic() + 30
        while len(_stored_identities(database_url)) < 10:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the ingest stored nothing"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        school.tap_many(40)  # the boards keep tapping while the cloud is down
        held = sum(b.stat()["journal"] for b in school.boards)
        assert held > 0, "with no ingest running the boards must keep their events"

        proc = _start_ingest_process(database_url, topic_prefix, mqtt_addr)
        school.tap_many(20)
        school.wait_drained(90)
    finally:
        proc.kill()
        proc.wait(10)

    tapped = _tapped_identities(school)
    stored = _stored_identities(database_url)
    assert len(tapped) == 100
    assert len(stored) == len(set(stored)) == 100
    assert sorted(stored) == sorted(tapped)
