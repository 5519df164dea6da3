"""board.json "eth" (issue #14 part 1): the Ethernet PHY's keys and pins of the WT32-ETH01 and
Olimex ESP32-POE class, checked by tools/boardconfig.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tools.boardconfig import BOARD_CONFIGS, errors, validate

WT32 = json.loads((BOARD_CONFIGS / "wt32-eth01-door-wiegand.json").read_text())
POE = json.loads((BOARD_CONFIGS / "olimex-esp32-poe-door-wiegand.json").read_text())


def _problems(doc: dict) -> list[str]:
    return [str(p) for p in errors(validate(doc))]


@pytest.mark.parametrize("doc", [WT32, POE], ids=["wt32-eth01", "olimex-esp32-poe"])
def test_ethernet_boards_are_valid_and_warning_free(doc: dict) -> None:
    assert validate(doc) == []


def test_a_pin_on_an_rmii_line_is_refused_with_eth() -> None:
    doc = copy.deepcopy(WT32)
    doc["relays"][0]["pin"] = 26
    assert _problems(doc) == [
        "relays[0].pin: error: GPIO 26 is the Ethernet RMII RXD1 on the esp32 (fixed, in use "
        "while eth is configured)"
    ]
    del doc["eth"]  # without Ethernet GPIO 26 is an ordinary output
    assert _problems(doc) == []


def test_the_phy_pins_themselves_are_checked() -> None:
    doc = copy.deepcopy(POE)
    doc["eth"]["mdc"] = 21
    assert _problems(doc) == [
        "eth.mdc: error: GPIO 21 is the Ethernet RMII TX_EN on the esp32 (fixed, in use while "
        "eth is configured)"
    ]
    doc["eth"]["mdc"] = 33  # also the green LED
    assert "eth.mdc: error: GPIO 33 is also used by leds.green" in _problems(doc)
    doc["eth"]["mdc"] = 36
    assert _problems(doc)[0].startswith("eth.mdc: error: GPIO 36 is input-only")


@pytest.mark.parametrize(("mode", "gpio", "allowed"), [("in", 17, "0"), ("out", 4, "0, 16, 17")])
def test_the_reference_clock_pin_fits_its_direction(mode: str, gpio: int, allowed: str) -> None:
    doc = copy.deepcopy(WT32)
    doc["eth"].update(ref_clk=gpio, ref_clk_mode=mode)
    if gpio == 4:
        doc["leds"]["red"] = 13
    assert _problems(doc) == [
        f"eth.ref_clk: error: the RMII reference clock can come {mode} only on GPIO {allowed} "
        "of the esp32"
    ]


def test_esp32s3_has_no_ethernet_mac() -> None:
    doc = json.loads((BOARD_CONFIGS / "esp32s3-devkitc-door-mfrc522.json").read_text())
    doc["eth"] = {"phy": "LAN8720", "mdc": 40, "mdio": 41}
    assert _problems(doc) == [
        "eth: error: the esp32s3 has no Ethernet MAC (RMII): wired Ethernet needs an esp32"
    ]


def test_structure_of_eth() -> None:
    doc = copy.deepcopy(WT32)
    del doc["eth"]["mdio"]
    doc["eth"]["phy"] = "W5500"
    doc["eth"]["phy_addr"] = 32
    found = _problems(doc)
    assert sorted(found) == [
        "eth.mdio: error: required key missing",
        'eth.phy: error: must be one of "LAN8720", "IP101", "RTL8201", "DP83848", "KSZ8041", '
        '"KSZ8081", got "W5500"',
        "eth.phy_addr: error: must be at most 31, got 32",
    ]


def test_shipped_files_are_the_ones_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "board-configs.md").read_text()
    for name in ("wt32-eth01-door-wiegand.json", "olimex-esp32-poe-door-wiegand.json"):
        assert name in doc
