"""The canteen's menu commands at their limits (D28-I), in the real MicroPython VM (sim HAL, ROMFS
image, the canteen's heap) against the real Mosquitto: a command bigger than the canteen's
receive buffer is read through without keeping it and answered "too_big" with its id; a menu
that parses but does not fit the board's packed-menu buffer is answered "too_big" and the old
menu keeps blocking; a good 8-day menu blocks at once, goes to menu.bin (device.json no longer
holds a menu), and still blocks after the board is powered on again."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from test_canteen_sim import EXTRA, NUTS, SITE_KEY, uid, whitelist
from test_controller_sim import cloud, lines  # noqa: F401  (fixture)

from simulator.board import LARGE_HEAP, BoardConfig, VirtualBoard


def _days(n: int, dish: list[Any], periods: tuple[str, ...] = ("lunch",)) -> dict[str, Any]:
    """`n` dated days from yesterday (the board's UTC day is among them), one set per period."""
    first = datetime.now(UTC).date() - timedelta(days=1)
    return {"reduced": "325", "days": {(first + timedelta(days=i)).isoformat(): {
        p: dish for p in periods} for i in range(n)}}  # fmt: skip


def test_menu_commands_too_big_and_kept(
    tmp_path: Path,
    topic_prefix: str,
    mqtt_addr: Any,
    cloud: Any,  # noqa: F811
) -> None:
    cfg = BoardConfig(device="ct-m", school="s1", site_key=SITE_KEY, mqtt_host=mqtt_addr[0],
                      mqtt_port=mqtt_addr[1], prefix=topic_prefix, extra=dict(EXTRA))  # fmt: skip
    flash = tmp_path / "ct-m"
    b = VirtualBoard(cfg, flash, heap=LARGE_HEAP)
    b.write_flash(whitelist())
    topic = f"{topic_prefix}/v1/dev/ct-m/cmd"

    def command(cid: int, menu: Any, pad: str = "") -> dict[str, Any]:
        doc = {"v": 1, "id": cid, "cmd": "config", "set": {"menu": menu}}
        if pad:
            doc["pad"] = pad
        before = len(lines(b, "cmd"))
        cloud.publish(topic, json.dumps(doc, separators=(",", ":")), 1)
        b.wait_for(lambda: len(lines(b, "cmd")) > before, 10, f"to answer command {cid}")
        return json.loads(lines(b, "cmd")[-1]["res"])

    def tap(n: int) -> tuple[str, str, dict[str, Any]]:
        before = len(lines(b, "display"))
        t = b.tap(uid(n))
        assert t is not None
        b.wait_for(lambda: len(lines(b, "display")) > before, 5, "to show")
        return t["result"], t["reason"], lines(b, "display")[-1]

    b.start()
    try:
        b.wait_for(lambda: b.mqtt_up, 10, "to connect")
        # 1. Bigger than the canteen's 2 KB receive buffer (16 days of two sets): only its head
        #    is kept; answered with its id, the connection stays up.
        big = _days(16, [90, 0, "700", "Плов с говядиной"], ("lunch", "dinner"))
        assert command(41, big) == {"v": 1, "id": 41, "ok": False, "error": "too_big"}
        assert command(42, {}, pad="x" * 20000)["error"] == "too_big" and b.mqtt_up
        # 2. Under 2 KB, valid, but 28 sets with long names do not fit the packed menu (1.5 KB):
        #    refused, nothing changed.
        many = _days(4, [90, 0, "700", "x" * 30], tuple(f"p{i}" for i in range(7)))
        assert len(json.dumps(many, separators=(",", ":"))) < 1900
        assert command(45, many) == {"v": 1, "id": 45, "ok": False, "error": "too_big"}
        assert tap(5)[:2] == ("denied", "allergen")  # device.json's menu (Plov, nuts) still blocks
        # 3. The 8-day menu: the nut-free pupil gets Manty, the nut-allergic one is blocked.
        good = _days(8, [71, NUTS, "700", "Манты с орехами"])
        assert command(43, good)["ok"] is True
        assert tap(6) == ("granted", "free", {"l1": "Free meal", "l2": "Манты с орехами"})
        assert tap(5)[:2] == ("denied", "allergen")
        doc = json.loads((flash / "device.json").read_text())
        assert doc["menu"] is None and (flash / "menu.bin").stat().st_size < 1536
    finally:
        b.stop()
    # 4. Powered on again: the menu comes from menu.bin (device.json's is gone).
    b.start()
    try:
        assert tap(5)[:2] == ("denied", "allergen")
        b.wait_for(lambda: b.mqtt_up, 10, "to connect")
        diag_before = len(lines(b, "cmd"))
        cloud.publish(topic, json.dumps({"v": 1, "id": 44, "cmd": "diag"}), 1)
        b.wait_for(lambda: len(lines(b, "cmd")) > diag_before, 10, "to answer diag")
        days = json.loads(lines(b, "cmd")[-1]["res"])["diag"]["menu"]
        assert days == sorted(good["days"]), days
    finally:
        b.stop()
