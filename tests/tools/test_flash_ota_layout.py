"""`qadam flash --romfs --ota` (D27-H, docs/ota.md "Partitions"): the OTA layout needs two ROMFS
partitions; a board (or a MicroPython image) with fewer, or with partitions too small for the
firmware image, is refused before anything is written; with two, the image goes into partition 0
and the partition bootstrap, slots.mpy and ota.json onto the filesystem. A stand-in board
(no serial port)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from flash_standin import board

from tools import flash
from tools.cli import main
from tools.flashing import EXIT_CONFIG, EXIT_USAGE, EXIT_VERIFY
from tools.flashing.otalayout import ENTRY, PARTS_MAIN, image_partitions

FAKE_PORT = "/dev/ttyFAKE0"
__all__ = ["board"]  # fixture


@pytest.fixture
def bundle(monkeypatch, tmp_path):
    """A small bundle (main.py, the bootstrap's two modules, one app module) instead of the
    whole firmware."""
    out = tmp_path / "bundle"

    def build(dest, root=flash.FIRMWARE):
        files = [
            dest / "main.py",
            dest / "slots.mpy",
            dest / "partslots.mpy",
            dest / "app" / "door.mpy",
        ]
        for f in files:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"M\x06\x00\x1f" + b"\0" * 200 if f.suffix == ".mpy" else b"")
        return files

    monkeypatch.setattr(flash, "build_bundle", build)
    return out


def _flash(bundle: Path, *argv: str) -> int:
    return main(["flash", "--port", FAKE_PORT, "--out", str(bundle), *argv])


def _image_size(bundle: Path) -> int:
    return (bundle.parent / (bundle.name + ".romfs")).stat().st_size


def test_a_board_with_one_romfs_partition_is_refused_before_anything_is_written(
    board, bundle, capsys
):
    board.segments = [0x20000]  # MicroPython's partitions-4MiB-romfs.csv: one ROMFS partition
    rc = _flash(bundle, "--romfs", "--ota")
    err = capsys.readouterr().err
    assert rc == EXIT_VERIFY
    assert "the board has 1 ROMFS partition(s)" in err and "two ROMFS partitions" in err
    assert board.files == {} and board.deployed == []


def test_partitions_smaller_than_the_image_are_refused(board, bundle, capsys):
    board.segments = [0x20000, 64]
    rc = _flash(bundle, "--romfs", "--ota")
    err = capsys.readouterr().err
    assert rc == EXIT_VERIFY and "ROMFS partition 1 has 64 B" in err
    assert board.files == {} and board.deployed == []


def test_two_partitions_take_the_image_in_partition_0_and_the_bootstrap(board, bundle, capsys):
    board.segments = [0x20000, 0x20000]
    rc = _flash(bundle, "--romfs", "--ota")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert board.deployed == [(0, _image_size(bundle))]
    assert board.files["main.py"] == PARTS_MAIN.encode()
    assert set(board.files) == {"main.py", "slots.mpy", "ota.json"}  # partslots: in the image
    assert json.loads(board.files["ota.json"]) == {
        "act": "a", "try": None, "left": 0, "ver": {}, "rb": None
    }  # fmt: skip
    assert "ROMFS partitions: 131072 B, 131072 B (slot a, slot b)" in out


def test_ota_needs_romfs(board, bundle, capsys):
    assert _flash(bundle, "--ota") == EXIT_USAGE
    assert "--ota is the OTA layout of --romfs" in capsys.readouterr().err


def _mp_image(path: Path, parts: list[tuple[str, int, int, int]]) -> Path:
    # A MicroPython .bin as written at 0x1000 on an ESP32: the partition table at file offset
    # 0x7000 (flash 0x8000), then the 0xebeb MD5 entry.
    data = bytearray(b"\xe9" + b"\xff" * (0x7000 + 0x1000 - 1))
    at = 0x7000
    for label, typ, sub, size in parts:
        off = 0x10000 + (at - 0x7000) * 0x10000
        ENTRY.pack_into(data, at, b"\xaa\x50", typ, sub, off, size, label.encode(), 0)
        at += ENTRY.size
    data[at : at + 2] = b"\xeb\xeb"
    path.write_bytes(bytes(data))
    return path


STOCK = [("nvs", 1, 2, 0x6000), ("phy_init", 1, 1, 0x1000), ("factory", 0, 0, 0x1D0000),
         ("romfs", 1, 0x8F, 0x20000)]  # fmt: skip


def test_a_micropython_image_with_one_romfs_partition_is_refused_offline(
    board, bundle, tmp_path, capsys
):
    img = _mp_image(tmp_path / "stock.bin", STOCK)
    assert image_partitions(img, 0x1000)[-1] == ("romfs", 1, 0x8F, 0x20000)
    rc = _flash(bundle, "--romfs", "--ota", "--image", str(img), "--chip", "esp32", "--dry-run")
    err = capsys.readouterr().err
    assert rc == EXIT_CONFIG and "ROMFS partitions: romfs (131072 B)" in err
    assert board.files == {} and board.deployed == []
    img2 = _mp_image(tmp_path / "ota.bin", [*STOCK, ("romfs_b", 1, 0x8F, 0x20000)])
    rc = _flash(bundle, "--romfs", "--ota", "--image", str(img2), "--chip", "esp32", "--dry-run")
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "refuse unless the board has two ROMFS partitions" in out


def test_without_ota_romfs_is_as_before(board, bundle, capsys):
    rc = _flash(bundle, "--romfs")
    assert rc == 0, capsys.readouterr().err
    assert board.deployed == [(0, _image_size(bundle))] and set(board.files) == {"main.py"}
    assert board.files["main.py"] == flash.ROMFS_MAIN
    assert struct.calcsize("<2sBBII16sI") == 32  # an ESP-IDF partition table entry
