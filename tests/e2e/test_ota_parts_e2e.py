"""OTA end to end onto ROMFS partitions (D27-H): two virtual boards whose slots are two ROMFS
partitions (simulator/ota_parts_board.py: the real firmware in the MicroPython VM, the
partitions the firmware's hal/simpart.py stand-in), the real Mosquitto, ingest and OTA worker,
a release built and signed by `qadam release`. Each board downloads it, its bootstrap checks it
and writes it into partition 1 (erase, program, read back), boots it on trial from there and
confirms it; partition 0 is untouched and no slot file is ever made."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from test_ota_e2e import (
    Fleet,
    _firmware,
    _firmware_rows,
    _key,
    _mark_good,
    _rollout,
    _wait,
    running,
)

from cloud.domain import registry
from cloud.ota import releases, rollouts
from cloud.settings import Settings
from simulator.board import BoardConfig
from simulator.ota_parts_board import PartsOtaBoard
from tools.release import build_image, public_key, sign

pytestmark = pytest.mark.slow

SITE_KEY = b"s" * 32
DEVICES = ["otap-0", "otap-1"]


@pytest.fixture
def world(database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int],
          tmp_path: Path) -> Iterator[tuple[Fleet, Settings, str]]:  # fmt: skip
    pub = public_key(_key())
    settings = Settings(database_url=database_url, mqtt_host=mqtt_addr[0],
                        mqtt_port=mqtt_addr[1], topic_prefix=topic_prefix,
                        ingest_client_id=f"ingest-{topic_prefix}", ota_public_key=pub,
                        ota_poll_ms=250, ota_canary_deadline_s=120)  # fmt: skip
    with psycopg.connect(database_url) as conn:
        registry.create_school(conn, "sk1", "School 1", SITE_KEY)
        for d in DEVICES:
            registry.register_device(conn, d, "sk1", "entrance", "door", "mfrc522")
    boards = [
        PartsOtaBoard(BoardConfig(d, "sk1", SITE_KEY, mqtt_host=mqtt_addr[0],
                                  mqtt_port=mqtt_addr[1], prefix=topic_prefix,
                                  extra={"ota_pub": pub, "heartbeat_s": 10}),
                      tmp_path / d)
        for d in DEVICES
    ]  # fmt: skip
    with running(settings, boards) as fleet:
        yield fleet, settings, database_url


def test_a_release_goes_into_the_other_partition_and_is_confirmed_there(
    world: tuple[Fleet, Settings, str], tmp_path: Path
) -> None:
    fleet, settings, url = world
    key = _key()
    good = sign(key, "0.2.0", build_image(_firmware(tmp_path, "good", _mark_good)))
    image = base64.b64decode(good["image_b64"])
    _wait("both boards online on slot a",
          lambda: all(r["online"] and r["slot"] == "a" for r in _firmware_rows(url).values()),
          60)  # fmt: skip
    before = {b.config.device: (b.flash / "romfs0.bin").read_bytes() for b in fleet.boards}
    with psycopg.connect(url) as conn:
        releases.publish(conn, settings.ota_public_key, good["version"], image, good["sha256"],
                         good["signature"], "", "e2e")  # fmt: skip
        ro = rollouts.create(conn, "0.2.0", DEVICES, DEVICES[:1], 120, "e2e")
    try:
        _wait("the release on both", lambda: _rollout(url, ro["id"])["state"] == "done", 180)
    except AssertionError as e:  # what the boards said, for the failure's reader
        said = {b.config.device: b.output[-30:] for b in fleet.boards}
        raise AssertionError(f"{e}; rollout {_rollout(url, ro['id'])}; boards {said}") from None
    rows = _firmware_rows(url)
    for b in fleet.boards:
        row = rows[b.config.device]
        assert (row["version"], row["slot"], row["trial"]) == ("0.2.0", "b", None), row
        p1 = (b.flash / "romfs1.bin").read_bytes()
        assert hashlib.sha256(p1[: len(image)]).hexdigest() == good["sha256"]
        assert (b.flash / "romfs0.bin").read_bytes() == before[b.config.device]
        left = {p.name for p in b.flash.iterdir()}
        assert not left & {"ota.part", "ota.chk", "slot_a.rom", "slot_b.rom"}, left
    # The new image, run from partition 1, does the job: a tap reaches the cloud and is acked.
    for i, b in enumerate(fleet.boards):
        assert b.tap(bytes([4, 1, 2, i])) is not None
    for b in fleet.boards:
        b.wait_drained(60)
