"""Canteen mode in the real MicroPython VM (sim HAL, ROMFS image, board-sized heap,
simulator.board.VirtualBoard) against the real Mosquitto: every counter outcome shows its
@display lines, the operator override grants an allergen block, a `config` command changes the
menu live, and the events reach a paho subscriber with the right reasons."""

from __future__ import annotations

import binascii
import json
import struct
import time
from pathlib import Path

from simulator.board import LARGE_HEAP, BoardConfig, VirtualBoard
from store.cardkey import card_key  # firmware/ is on sys.path via conftest
from test_controller_sim import cloud, cloud_events, lines  # noqa: F401  (fixture)

SITE_KEY = bytes(range(16))
NUTS = 0x0004


def uid(n: int) -> bytes:
    return bytes([n]) * 4


# uid number -> (meal category, allergen mask)
CARDS = {1: (1, 0), 2: (2, 0), 3: (3, 0), 4: (3, 0), 5: (1, NUTS), 6: (1, 0)}


def whitelist() -> bytes:
    recs = sorted(
        card_key(SITE_KEY, uid(n)) + bytes([cat << 2 | 1, 0]) + struct.pack("<H", alg)
        for n, (cat, alg) in CARDS.items()
    )
    body = b"".join(recs)
    crc = binascii.crc32(body) & 0xFFFFFFFF
    return b"QWL1" + struct.pack("<HHIII", 1, 12, 1, len(recs), crc) + bytes(12) + body


EXTRA = {
    "mode": "canteen",
    "reader": "canteen",
    "meal_periods": {"lunch": ["00:00", "24:00"]},
    "menu": {"periods": {"lunch": {"dish": "Plov", "allergens": NUTS | 1, "price": "650",
                                   "reduced": "325"}}},
    "offline_credit_limit": "1000",
    "override_s": 20,
}


def test_canteen_counter_outcomes_reach_the_cloud(tmp_path: Path, topic_prefix, mqtt_addr,
                                                  cloud):  # noqa: F811
    extra = dict(EXTRA, balances={card_key(SITE_KEY, uid(3)).hex(): "1000"})
    cfg = BoardConfig(device="ct-1", school="s1", site_key=SITE_KEY, mqtt_host=mqtt_addr[0],
                      mqtt_port=mqtt_addr[1], prefix=topic_prefix, extra=extra)
    b = VirtualBoard(cfg, tmp_path / "ct-1", heap=LARGE_HEAP)  # no 64 KB canteen yet (D16)
    b.write_flash(whitelist())
    b.start()
    try:
        b.wait_for(lambda: b.mqtt_up, 10, "to connect")
        heap = b.stat()["heap"]
        assert heap >= 8192, b.last_stat

        def tap(n: int) -> tuple[dict, dict]:
            before = len(lines(b, "display"))
            t = b.tap(uid(n))
            assert t is not None
            b.wait_for(lambda: len(lines(b, "display")) > before, 5, "to show")
            return t, lines(b, "display")[-1]

        want = [
            (1, "granted", "free", {"l1": "Free meal", "l2": "Plov"}),
            (2, "granted", "reduced", {"l1": "Reduced price 325", "l2": "Credit 325/1000"}),
            (3, "granted", "paid", {"l1": "Paid from balance 650", "l2": "Balance 350"}),
            (4, "granted", "offline_credit", {"l1": "On credit 650", "l2": "Credit 650/1000"}),
            (1, "denied", "already_received", {"l1": "Already received", "l2": "lunch"}),
            (5, "denied", "allergen", {"l1": "BLOCKED: allergen", "l2": "Plov: 0x0004"}),
        ]
        for n, result, reason, disp in want:
            if n == 1 and reason == "already_received":
                time.sleep(0.1)
            t, d = tap(n)
            assert (t["result"], t["reason"]) == (result, reason), t
            assert d == disp, (reason, d)
        blocked = t["seq"]
        n = len(b.taps)
        b._send("override")
        b.wait_for(lambda: len(b.taps) > n, 5, "to override")
        ov = b.taps[n]
        assert (ov["result"], ov["reason"], ov["ref"]) == ("granted", "override_allergen", blocked)
        assert lines(b, "display")[-1] == {"l1": "OVERRIDE allergen", "l2": "Plov"}

        # A new menu over the cmd topic, applied live.
        menu = {"periods": {"lunch": {"dish": "Manty", "allergens": 0, "price": "700"}}}
        cloud.publish(f"{topic_prefix}/v1/dev/ct-1/cmd",
                      json.dumps({"v": 1, "id": 7, "cmd": "config", "set": {"menu": menu}}), 1)
        b.wait_for(lambda: bool(lines(b, "cmd")), 10, "to answer the command")
        assert json.loads(lines(b, "cmd")[-1]["res"])["ok"] is True
        assert tap(6)[1] == {"l1": "Free meal", "l2": "Manty"}

        reasons = {"free", "reduced", "paid", "offline_credit", "already_received", "allergen",
                   "override_allergen"}
        evs = cloud_events(cloud, lambda g: len(g) >= 8)
        assert {e["reason"] for e in evs} == reasons
        for e in evs:
            assert e["kind"] == "tap" and e["reader"] == "canteen"
            assert e["result"] == ("denied" if e["reason"] in ("already_received", "allergen")
                                   else "granted")
        paid = next(e for e in evs if e["reason"] == "paid")
        assert (paid["amount"], paid["balance"], paid["meal"]) == ("650", "350", "lunch")
        ov = next(e for e in evs if e["reason"] == "override_allergen")
        assert ov["ref"] == blocked and ov["paid_as"] == "free"
        assert next(e for e in evs if e["reason"] == "offline_credit")["credit"] == "650"
        heap_after = b.stat()["heap"]
        print("canteen heap after connect", heap, "after taps", heap_after)
        assert heap_after >= 8192
    finally:
        b.stop()
