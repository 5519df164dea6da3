"""Free heap of a canteen board (the real firmware in the MicroPython VM from its ROMFS image)
with no menu, the one-day menu of before (two periods) and the dated menu the cloud sends (D27-A:
today and the next 7 days, two sets a day, 16 sets; and the same with each set as a dict, the
form it replaced), after connect and after 300 free-meal taps at the counter; and the dated
menu arriving live as a ``config`` command on a board that had none.

Then the canteen board in the field (bench/canteen_field.py: TLS + Wi-Fi + NTP, two 8-day menus
by command, taps, a reconnect) at 96 and 100 KiB, ``--repeat`` runs each (D28-I).

``python -m bench canteen_menu [--repeat N]``. Needs Mosquitto (a private one is started). The
board's heap is simulator.board.LARGE_HEAP (100 KiB, a plain ESP32; canteen boards are not held
to 64 KiB, D16). A board that does not boot or connect reports -1.
"""

from __future__ import annotations

import binascii
import json
import struct
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.board_memory import ACK_KEY, SITE_KEY, TAPS, Acker, card_key, uid
from bench.common import Row, mosquitto
from simulator.board import LARGE_HEAP, BoardConfig, BoardError, VirtualBoard

PERIODS = {"breakfast": ["00:00", "12:00"], "lunch": ["12:00", "24:00"]}
SET = {"dish": "Plov +2", "id": 17, "allergens": 0x0084, "price": "950.50", "reduced": "325"}


def dated_menu(days: int = 8, as_dicts: bool = False, first: int = 0,
               name: str = "Plov +2") -> dict[str, Any]:  # fmt: skip
    """What the cloud sends (D27-A): a set per period as [id, allergens, price, name], the
    reduced price once; or (as_dicts) each set as a dict, the form it replaced. `first`: the
    first date, days from today (and the first dish id's offset)."""
    today = date.today()
    sets = {(today + timedelta(days=i)).isoformat(): {
        p: dict(SET, id=17 + i) if as_dicts else [17 + i, 0x0084, "950.50", name]
        for p in PERIODS} for i in range(first, first + days)}  # fmt: skip
    return {"days": sets} if as_dicts else {"reduced": "325", "days": sets}


# The field runs' menus: the display's longest name (cloud/commands/menu.py NAME_MAX, 16
# characters), in Russian (two bytes a letter), the week from today and then from tomorrow.
FIELD_NAME = "Плов с говяд. +2"
FIELD_MENUS = [dated_menu(name=FIELD_NAME), dated_menu(first=1, name=FIELD_NAME)]


MENUS: dict[str, dict[str, Any] | None] = {
    "no menu": None,
    "one-day menu": {"periods": {p: SET for p in PERIODS}},
    "dated menu, 8 days": dated_menu(),
    "dated menu, 8 days, sets as dicts": dated_menu(as_dicts=True),
}


def free_whitelist(n: int) -> bytes:
    """Every card a student with free meals: the taps charge nothing, so what the runs differ in
    is the menu (paid taps on offline credit grow a dict per card, another measurement)."""
    recs = b"".join(sorted(card_key(uid(i)) + bytes([1 << 2 | 1, 0, 0, 0]) for i in range(n)))
    crc = binascii.crc32(recs) & 0xFFFFFFFF
    return b"QWL1" + struct.pack("<HHIII", 1, 12, 1, n, crc) + bytes(12) + recs


def run_board(label: str, menu: dict[str, Any] | None, host: str, port: int, prefix: str,
              live: bool = False) -> dict[str, Any]:  # fmt: skip
    extra: dict[str, Any] = {"mode": "canteen", "reader": "canteen", "meal_periods": PERIODS,
                             "ack_key": ACK_KEY.hex()}  # fmt: skip
    if menu is not None and not live:
        extra["menu"] = menu
    dev = "menu-" + uuid.uuid4().hex[:8]
    cfg = BoardConfig(device=dev, school="s1", site_key=SITE_KEY, mqtt_host=host,
                      mqtt_port=port, prefix=prefix, extra=extra)  # fmt: skip
    out: dict[str, Any] = {"label": label}
    acker = Acker(host, port, prefix)
    with tempfile.TemporaryDirectory(prefix="qadam-bench-menu-") as d:
        b = VirtualBoard(cfg, Path(d), heap=LARGE_HEAP)
        b.write_flash(free_whitelist(TAPS))
        try:
            b.start()
            b.wait_for(lambda: b.mqtt_up, 15, "to connect")
            b.tap(uid(TAPS - 1))  # the canteen loads at its first tap (or at boot in canteen mode)
            out["heap_connect"] = b.stat()["heap"]
            if live:
                pub = mqtt.Client(CallbackAPIVersion.VERSION2)
                pub.connect(host, port)
                pub.loop_start()
                cmd = {"v": 1, "id": 1, "cmd": "config", "set": {"menu": menu}}
                pub.publish(f"{prefix}/v1/dev/{dev}/cmd", json.dumps(cmd), 1).wait_for_publish()
                b.wait_for(lambda: any(x.startswith("@cmd ") for x in b.output), 15, "the reply")
                pub.loop_stop()
                pub.disconnect()
                line = next(x for x in b.output if x.startswith("@cmd "))
                out["command_ok"] = json.loads(json.loads(line.split(" ", 1)[1])["res"])["ok"]
                out["heap_command"] = b.stat()["heap"]
            t = time.monotonic()
            for i in range(TAPS - 1):
                b.tap(uid(i))
            out["tap_s"] = time.monotonic() - t
            b.wait_drained(60)
            out["heap_after"] = b.stat()["heap"]
        except BoardError as e:
            out["error"] = str(e).splitlines()[0]
        finally:
            b.stop()
            acker.close()
            out["memory_errors"] = sum("MemoryError" in line for line in b.output)
    return out


def run(repeat: int = 1) -> list[Row]:
    from bench.canteen_field import field_rows

    rows: list[Row] = []
    with mosquitto() as port:
        prefix = "bm" + uuid.uuid4().hex[:8]
        got = {label: run_board(label, m, "127.0.0.1", port, prefix) for label, m in MENUS.items()}
        live = run_board("dated menu by command", dated_menu(), "127.0.0.1", port, prefix, True)
    base = got["no menu"].get("heap_connect", -1)
    for label, r in [*got.items(), ("dated menu by command", live)]:
        for key, what in (("heap_connect", "after connect"), ("heap_command", "after the command"),
                          ("heap_after", f"after {TAPS} taps")):  # fmt: skip
            if key in r or key != "heap_command":
                rows.append(Row(f"canteen {LARGE_HEAP}, {label}: free heap {what}",
                                r.get(key, -1), "bytes"))  # fmt: skip
        if "command_ok" in r:
            rows.append(Row(f"canteen {LARGE_HEAP}, {label}: answered ok", int(r["command_ok"]),
                            "1/0"))  # fmt: skip
        rows.append(Row(f"canteen {LARGE_HEAP}, {label}: MemoryError lines",
                        r.get("memory_errors", -1), "lines"))  # fmt: skip
        if "error" in r:
            print(f"{label}: {r['error']}")
    for label in ("one-day menu", "dated menu, 8 days", "dated menu, 8 days, sets as dicts"):
        cost = base - got[label].get("heap_connect", base)
        rows.append(Row(f"canteen {LARGE_HEAP}: heap the {label} holds (vs no menu)", cost,
                        "bytes"))  # fmt: skip
    return rows + field_rows(repeat, FIELD_MENUS, free_whitelist(TAPS))
