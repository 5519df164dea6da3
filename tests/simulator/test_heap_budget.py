"""A virtual board given no heap gets the budget measured for what its files configure
(simulator/heap_budget.py, docs/decisions.md D28-I): before, every TLS board got 80 KiB whatever
its network, less than a TLS board with a Wi-Fi bring-up needs (D27-C: its connect runs out at
80 and 84 KiB)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.board import BoardConfig, VirtualBoard
from simulator.heap_budget import budget

TLS = {"mqtt": {"host": "h", "tls": True, "ca": "ca.pem"}}
WIFI = {"wifi": [{"ssid": "school", "key": "k" * 8}]}
NTP = {"ntp": {"servers": ["pool.ntp.org"]}}


@pytest.mark.parametrize(
    ("device", "board", "heap"),
    [
        ({}, {}, "64K"),
        ({"antipassback": True}, {}, "72K"),
        ({"profiles": {"1": {"days": "12345"}}}, {}, "72K"),
        (TLS, {}, "80K"),
        (WIFI, {}, "80K"),
        (NTP, {}, "80K"),
        ({}, {"eth": {"phy": "LAN8720"}}, "80K"),
        ({**TLS, **WIFI, **NTP}, {}, "96K"),
        (TLS, {"eth": {"phy": "LAN8720"}}, "96K"),
        ({**TLS, **WIFI, "antipassback": True}, {}, "96K"),
        ({"mode": "canteen"}, {}, "100K"),
        ({"reader": "canteen", **TLS, **WIFI, **NTP}, {}, "100K"),
    ],
)
def test_budget_per_mode_and_network(device: dict, board: dict, heap: str) -> None:
    assert budget(device, board) == heap


def test_a_board_gets_the_budget_of_the_files_in_its_flash(tmp_path: Path) -> None:
    cfg = BoardConfig(device="d1", school="s1", site_key=b"k" * 16)
    b = VirtualBoard(cfg, tmp_path / "d1")
    assert b.heap == "64K" and b.vm_heap() != "64K"  # ROMFS: the image on top
    b.write_flash(None)
    assert b.heap == "64K"
    # What `qadam flash --cloud ... --wifi` writes for a TLS cloud: the board in the field.
    doc = json.loads((b.flash / "device.json").read_text())
    (b.flash / "device.json").write_text(json.dumps({**doc, **TLS, **WIFI, **NTP}))
    assert b.heap == "96K"
    (b.flash / "device.json").write_text(json.dumps({**doc, **TLS, **WIFI, "mode": "canteen"}))
    assert b.heap == "100K"
    # A heap the caller names wins.
    assert VirtualBoard(cfg, b.flash, heap="112K").heap == "112K"
    # A config whose extras say TLS, before any file is written: 80K (D25-K), as before.
    tls_cfg = BoardConfig(device="d2", school="s1", site_key=b"k" * 16, extra=TLS)
    assert VirtualBoard(tls_cfg, tmp_path / "d2").heap == "80K"
