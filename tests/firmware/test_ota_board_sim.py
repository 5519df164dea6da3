"""A virtual board with the OTA layout (simulator/ota_board.py: the real firmware in the VM,
booted from its flash's slots by the bootstrap): a new image on trial that trips the watchdog is
given up at the next boot (the previous image boots, the release is reported rolled back), and
a board on trial that is power-cut before any ack counts its trial boots down to the rollback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from simulator.board import BoardConfig, BoardError
from simulator.ota_board import REBOOT_EXIT, OtaBoard

SITE_KEY = b"k" * 32


def _on_trial(tmp: Path, prefix: str, addr: tuple[str, int], extra: dict) -> OtaBoard:
    cfg = BoardConfig(device="ota-1", school="s1", site_key=SITE_KEY, mqtt_host=addr[0],
                      mqtt_port=addr[1], prefix=prefix, extra={"ota_pub": "00" * 32, **extra})
    b = OtaBoard(cfg, tmp / "ota-1")
    b.write_flash(None)
    # A new release in slot b on trial (the same bytes as slot a will do: what runs is the point)
    shutil.copyfile(b.flash / "slot_a.rom", b.flash / "slot_b.rom")
    (b.flash / "ota.json").write_text(json.dumps(
        {"act": "a", "try": "b", "left": 3, "ver": {"a": "0.1.0", "b": "0.2.0"}, "rb": None}))
    return b


def _state(b: OtaBoard) -> dict:
    return json.loads((b.flash / "ota.json").read_text())


def test_watchdog_reset_on_trial_boots_the_previous_image(tmp_path, topic_prefix, mqtt_addr):
    b = _on_trial(tmp_path, topic_prefix, mqtt_addr, {"supervisor": {"wdt_ms": 1500}})
    b.start()
    try:
        s = _state(b)
        assert s["try"] == "b" and s["left"] == 2  # this boot used one trial boot
        b._send("hang")  # the event loop is stuck: only the watchdog thread runs
        b.wait_for(lambda: b.exited, 10, "to be reset by the watchdog")
        assert (b.flash / "wdt.rst").exists()
        b.power_cut()
        b.start()  # the reset's power-on
        s = _state(b)
        assert s["try"] is None and s["act"] == "a" and s["rb"] == "0.2.0", s
        assert not (b.flash / "wdt.rst").exists()
        assert b.stat()["safe_mode"] is False
    finally:
        b.stop()


def test_trial_boots_without_an_ack_end_in_the_previous_image(tmp_path, topic_prefix,
                                                             mqtt_addr):  # fmt: skip
    # No cloud acks anything here; each power cycle uses a trial boot, the fourth boots slot a.
    b = _on_trial(tmp_path, topic_prefix, mqtt_addr, {})
    try:
        for left in (2, 1, 0):
            b.start()
            assert _state(b)["left"] == left and _state(b)["try"] == "b"
            b.power_cut()
        b.start()
        s = _state(b)
        assert s["try"] is None and s["act"] == "a" and s["rb"] == "0.2.0", s
    finally:
        b.stop()


def test_trial_without_an_ack_restarts_the_board(tmp_path, topic_prefix, mqtt_addr):
    b = _on_trial(tmp_path, topic_prefix, mqtt_addr, {"ota_trial_s": 2})
    try:
        b.start()
        b.wait_for(lambda: b.exited, 15, "to restart after its trial time")
        assert b.proc is not None and b.proc.wait(5) == REBOOT_EXIT
        assert any('"trial":"timeout"' in x for x in b.output)
    finally:
        b.stop()


def test_first_event_ack_confirms_the_trial(tmp_path, topic_prefix, mqtt_addr, database_url):
    # Only the ingest runs (no OTA worker, so no trial ack): a tap's ack confirms the image.
    import psycopg

    from cloud.domain import registry
    from cloud.ingest.service import Ingest
    from cloud.settings import Settings

    with psycopg.connect(database_url) as conn:
        registry.create_school(conn, "s1", "School 1", SITE_KEY)
        registry.register_device(conn, "ota-1", "s1", "entrance", "door", "mfrc522")
    ingest = Ingest(Settings(database_url=database_url, mqtt_host=mqtt_addr[0],
                             mqtt_port=mqtt_addr[1], topic_prefix=topic_prefix,
                             ingest_client_id=f"ingest-{topic_prefix}"))  # fmt: skip
    ingest.start()
    b = _on_trial(tmp_path, topic_prefix, mqtt_addr, {})
    try:
        b.start()
        b.wait_for(lambda: b.mqtt_up, 20, "to connect")
        assert _state(b)["try"] == "b"
        b.tap(bytes.fromhex("04a1b2c3"))
        b.wait_drained(30)
        b.wait_for(lambda: any('"by":"events"' in x for x in b.output), 10, "to confirm")
        s = _state(b)
        assert s["act"] == "b" and s["try"] is None, s
    finally:
        b.stop()
        ingest.stop()


def test_an_image_that_does_not_boot_uses_up_its_trial_boots(tmp_path, topic_prefix, mqtt_addr):
    # Not a ROMFS image at all (flash rot; a verified download cannot be this): each trial boot
    # resets at once; the fourth power-on boots slot a.
    b = _on_trial(tmp_path, topic_prefix, mqtt_addr, {})
    (b.flash / "slot_b.rom").write_bytes(b"\x00" * 4096)
    try:
        for _ in range(3):
            with pytest.raises(BoardError):
                b.start()
            assert b.proc is not None and b.proc.wait(5) == REBOOT_EXIT
            b.power_cut()
        b.start()
        s = _state(b)
        assert s["try"] is None and s["act"] == "a" and s["rb"] == "0.2.0", s
    finally:
        b.stop()
