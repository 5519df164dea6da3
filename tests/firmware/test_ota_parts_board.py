"""A virtual board whose OTA slots are two ROMFS partitions (simulator/ota_parts_board.py: the
real firmware in the VM, the partitions the firmware's hal/simpart.py stand-in): the bootstrap
mounts the partition ota.json names (slot b on trial runs even with partition a erased), and a
power cut in the middle of writing the inactive partition leaves a board that boots the
confirmed one."""

from __future__ import annotations

import json
from pathlib import Path

from simulator.board import BoardConfig
from simulator.ota_parts_board import PART_SIZE, PartsOtaBoard, image_size

SITE_KEY = b"k" * 32


def _board(tmp: Path, prefix: str, addr: tuple[str, int]) -> PartsOtaBoard:
    cfg = BoardConfig(device="ota-p1", school="s1", site_key=SITE_KEY, mqtt_host=addr[0],
                      mqtt_port=addr[1], prefix=prefix, extra={"ota_pub": "00" * 32})  # fmt: skip
    b = PartsOtaBoard(cfg, tmp / "ota-p1")
    b.write_flash(None)
    return b


def _state(b: PartsOtaBoard) -> dict:
    return json.loads((b.flash / "ota.json").read_text())


def test_board_boots_the_partition_its_slot_state_names(tmp_path, topic_prefix, mqtt_addr):
    b = _board(tmp_path, topic_prefix, mqtt_addr)
    p0, p1 = b.flash / "romfs0.bin", b.flash / "romfs1.bin"
    assert p0.stat().st_size == PART_SIZE and image_size(p0) > 0 and image_size(p1) == 0
    assert not (b.flash / "slot_a.rom").exists()
    try:
        b.start()
        assert b.stat()["safe_mode"] is False  # slot a: the image the flash tool deployed
        b.power_cut()
        # A release in partition b on trial, partition a erased: only b can be what runs.
        p1.write_bytes(p0.read_bytes())
        p0.write_bytes(b"\xff" * PART_SIZE)
        (b.flash / "ota.json").write_text(
            json.dumps(
                {"act": "a", "try": "b", "left": 3, "ver": {"a": "0.1.0", "b": "0.2.0"}, "rb": None}
            )
        )
        b.start()
        assert b.stat()["safe_mode"] is False
        s = _state(b)
        assert s["try"] == "b" and s["left"] == 2
    finally:
        b.stop()


def test_power_cut_while_writing_the_inactive_partition_boots_the_confirmed_one(
    tmp_path, topic_prefix, mqtt_addr
):
    # What a cut in partslots.install leaves: partition b erased and half programmed, ota.json
    # still naming a; the board boots a (and its check would start the write again).
    b = _board(tmp_path, topic_prefix, mqtt_addr)
    p0, p1 = b.flash / "romfs0.bin", b.flash / "romfs1.bin"
    img = p0.read_bytes()[: image_size(p0)]
    half = len(img) // 2 // 1024 * 1024
    p1.write_bytes(img[:half] + b"\xff" * (PART_SIZE - half))
    state = {"act": "a", "try": None, "left": 0, "ver": {"a": "0.1.0"}, "rb": None}
    (b.flash / "ota.json").write_text(json.dumps(state))
    before = p0.read_bytes()
    try:
        b.start()
        assert b.stat()["safe_mode"] is False
        assert _state(b) == state
        assert p0.read_bytes() == before
    finally:
        b.stop()
