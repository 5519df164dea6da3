"""The heap a virtual board gets when the caller names none: the budget measured for what its
files configure (mode, TLS, network bring-up), in the 64-bit VM (docs/decisions.md D28-I).

| board                                     | heap  | measured in                       |
|-------------------------------------------|-------|-----------------------------------|
| door / turnstile, plain MQTT              | 64K   | D16 (bench board_memory)          |
| turnstile with anti-passback + schedules  | 72K   | D26                               |
| door with QR scanner + keypad (altid)     | 76K   | D29-J (tests/altid e2e)           |
| TLS, or Wi-Fi/Ethernet/NTP bring-up       | 80K   | D25-K (TLS door), D25-J (Wi-Fi)   |
| TLS and a bring-up (a board in the field) | 96K   | D27-C (bench power_on)            |
| canteen, whatever its network             | 100K  | D16, D28-I (bench canteen_menu)   |

A turnstile with anti-passback over TLS was not measured: it gets the larger of the two figures
that apply (80K or 96K), not a sum.
"""

from __future__ import annotations

from typing import Any

PLAIN = "64K"
ANTIPASSBACK = "72K"
TLS_OR_NET = "80K"
ALTID = "76K"
FIELD = "96K"
CANTEEN = "100K"


def budget(device: dict[str, Any], board: dict[str, Any] | None = None) -> str:
    """The heap for a board with this device.json and board.json."""
    board = board or {}
    if device.get("mode") == "canteen" or device.get("reader") == "canteen":
        return CANTEEN
    tls = bool((device.get("mqtt") or {}).get("tls"))
    bring_up = bool(device.get("wifi") or device.get("ntp") or board.get("eth"))
    if tls and bring_up:
        return FIELD
    if tls or bring_up:
        return TLS_OR_NET
    rules = bool(device.get("antipassback") or device.get("profiles"))
    if device.get("altid"):
        # QR scanner + keypad (D29-J): a door's QR/PIN run needs 68K; at 72K a whitelist update
        # after it failed once in three runs (MemoryError); 76K leaves ~13 KB free. With rules
        # too, not measured: the next figure up
        return TLS_OR_NET if rules else ALTID
    if rules:
        return ANTIPASSBACK
    return PLAIN
