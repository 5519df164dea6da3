"""board.json for alternative identification (D29-J): a QR scanner on a UART ("qr_scanners")
and a Wiegand reader with keys ("keypad") validate; the scanner's pins are checked like every
pin (one use per GPIO, input/output capability); unknown keys are refused."""

from __future__ import annotations

from typing import Any

from tools.boardconfig import ERROR, validate


def _door(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "hal": "esp32", "chip": "esp32", "mode": "door",
        "readers": [{"type": "wiegand34", "reader": "in", "keypad": True,
                     "pins": {"d0": 32, "d1": 33}}],
        "qr_scanners": [{"reader": "in", "uart": {"id": 2, "rx": 16, "tx": 17,
                                                  "baudrate": 9600}}],
        "relays": [{"pin": 26}],
    }  # fmt: skip
    doc.update(extra)
    return doc


def _errors(doc: dict[str, Any]) -> list[str]:
    return [f"{p.path}: {p.reason}" for p in validate(doc) if p.level == ERROR]


def test_a_door_with_a_scanner_and_a_keypad_validates() -> None:
    assert _errors(_door()) == []


def test_the_scanners_pins_and_keys_are_checked() -> None:
    doc = _door(relays=[{"pin": 16}])  # the relay on the scanner's RX pin
    assert any("16" in e for e in _errors(doc)), _errors(doc)
    doc = _door()
    doc["qr_scanners"][0]["uart"]["tx"] = 34  # an input-only GPIO cannot drive the module's RX
    assert any("qr_scanners[0].uart.tx" in e for e in _errors(doc)), _errors(doc)
    doc = _door()
    doc["qr_scanners"][0]["uart"]["baudrate"] = 300
    assert any("baudrate" in e for e in _errors(doc))
    doc = _door()
    doc["qr_scanners"][0]["pins"] = {"rx": 16}
    assert any("unknown key 'pins'" in e for e in _errors(doc))
    doc = _door()
    doc["readers"][0]["keypad"] = "yes"
    assert any("keypad" in e for e in _errors(doc))
