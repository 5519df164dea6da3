"""A canteen board in the field at its heap budget (issue #14, D28-I): TLS with the CA verified
(a private Mosquitto, tests/tls_broker.py), the Wi-Fi bring-up (hal.simnet) and NTP (a local
server), in the MicroPython VM from the ROMFS image. Each run: connect, the 8-day dated menu sent
as a ``config`` command, then a second 8-day menu replacing it (the cloud sends one each time a
menu changes or the window moves at midnight, D27-A), 298 free-meal taps, the Wi-Fi lost (a tap
offline), and back (a second TLS handshake in a heap the menus and taps have cut up), one more
tap; all 300 acked.

Part of ``python -m bench canteen_menu`` (``--repeat N``: N runs per heap). A run passes when
both commands are answered ok, every tap is acked and no MemoryError is printed; the rows give how
many passed and the smallest free heap seen at each step.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.board_memory import ACK_KEY, SITE_KEY, TAPS, Acker, uid
from bench.common import Row
from simulator.board import BoardConfig, BoardError, VirtualBoard

# The heaps measured: the field door's 96 KiB (D27-C) and the ~100 KiB of a plain ESP32 (D7).
FIELD_HEAPS = ("96K", "100K")
SSID, WIFI_KEY = "school", "school-passphrase"
STEPS = ("heap_connect", "heap_menus", "heap_taps", "heap_offline", "heap_reconnect")


def _menu_command(cid: int, menu: dict[str, Any]) -> bytes:
    """As the cloud sends it (cloud/commands/queue.py: compact JSON)."""
    doc = {"v": 1, "id": cid, "cmd": "config", "set": {"menu": menu}}
    return json.dumps(doc, separators=(",", ":")).encode()


def _answered(board: VirtualBoard, n: int) -> bool:
    return len(_replies(board)) >= n


def _replies(board: VirtualBoard) -> list[dict[str, Any]]:
    lines = [x for x in board.output if x.startswith("@cmd ")]
    return [json.loads(json.loads(x.split(" ", 1)[1])["res"]) for x in lines]


def run_field(heap: str, menus: list[dict[str, Any]], whitelist: bytes, ports: tuple[int, int],
              pki: Path, ntp_port: int) -> dict[str, Any]:  # fmt: skip
    """One canteen board through the steps of the module doc; -> its figures."""
    tls_port, plain_port = ports
    prefix = "cf" + uuid.uuid4().hex[:8]
    dev = "field-" + uuid.uuid4().hex[:6]
    cfg = BoardConfig(device=dev, school="s1", site_key=SITE_KEY, mqtt_port=tls_port,
                      prefix=prefix)  # fmt: skip
    cfg.extra = {
        "mode": "canteen", "reader": "canteen", "ack_key": ACK_KEY.hex(),
        "meal_periods": {"breakfast": ["00:00", "12:00"], "lunch": ["12:00", "24:00"]},
        "mqtt": dict(cfg.device_json()["mqtt"], tls=True, ca="ca.pem",
                     server_hostname="127.0.0.1"),
        "wifi": [{"ssid": SSID, "key": WIFI_KEY}],
        "ntp": {"servers": [f"127.0.0.1:{ntp_port}"], "every_s": 60},
    }  # fmt: skip
    out: dict[str, Any] = {"ok": False}
    acker = Acker("127.0.0.1", plain_port, prefix)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", plain_port)
    pub.loop_start()
    with tempfile.TemporaryDirectory(prefix="qadam-bench-field-") as d:
        errs: list[str] = []  # every MemoryError line (the board's output keeps only the last)

        def watch(_dev: str, line: str) -> None:
            if "MemoryError" in line:
                errs.append(line)

        b = VirtualBoard(cfg, Path(d), heap=heap, echo=watch)
        b.write_flash(whitelist)
        (b.flash / "ca.pem").write_bytes((pki / "ca.pem").read_bytes())
        (b.flash / "board.json").write_text(
            json.dumps({"hal": "sim", "sim_net": {"aps": {SSID: [WIFI_KEY, -60]}}})
        )
        try:
            b.start()
            b.wait_for(lambda: b.mqtt_up, 30, "to connect over TLS")
            b.wait_for(lambda: b.stat()["sync"], 20, "to sync its clock over NTP")
            out["heap_connect"] = b.stat()["heap"]
            for i, menu in enumerate(menus, 1):
                topic = f"{prefix}/v1/dev/{dev}/cmd"
                pub.publish(topic, _menu_command(i, menu), 1).wait_for_publish()
                b.wait_for(partial(_answered, b, i), 20, f"the reply to command {i}")
            replies = _replies(b)
            out["menus_ok"] = sum(r.get("ok") is True for r in replies)
            out["refused"] = [r.get("error") for r in replies if r.get("ok") is not True]
            out["heap_menus"] = b.stat()["heap"]
            for i in range(TAPS - 2):
                b.tap(uid(i), "canteen")
            b.wait_drained(60)
            out["heap_taps"] = b.stat()["heap"]
            b._send(f"net noap {SSID}")
            b.wait_for(lambda: not b.mqtt_up, 20, "to lose the broker with its Wi-Fi")
            b.tap(uid(TAPS - 2), "canteen")  # a tap offline, journaled (the TLS reserve held)
            out["heap_offline"] = b.stat()["heap"]
            b._send(f"net ap {SSID} {WIFI_KEY} -60")
            b.wait_for(lambda: b.mqtt_up, 30, "to come back over TLS")
            b.tap(uid(TAPS - 1), "canteen")
            b.wait_drained(30)
            out["heap_reconnect"] = b.stat()["heap"]
            out["acked"] = b.stat()["acked"]
        except BoardError as e:
            out["error"] = str(e).splitlines()[0]
        finally:
            b.stop()
            pub.loop_stop()
            pub.disconnect()
            acker.close()
            out["memory_errors"] = len(errs)
            if errs:
                out["first_memory_error"] = errs[0][:160]
    out["ok"] = (out.get("menus_ok") == len(menus) and out.get("acked") == TAPS
                 and out["memory_errors"] == 0 and "error" not in out)  # fmt: skip
    return out


def field_rows(repeat: int, menus: list[dict[str, Any]], whitelist: bytes) -> list[Row]:
    """`repeat` runs at each of FIELD_HEAPS; a row of passes and the smallest free heap per step."""
    from tests.ntp_server import NtpServer
    from tests.tls_broker import make_pki, tls_mosquitto

    rows: list[Row] = []
    ntp = NtpServer()
    try:
        with tempfile.TemporaryDirectory(prefix="qadam-bench-field-pki-") as d:
            pki = make_pki(Path(d) / "pki")
            with tls_mosquitto(pki) as ports:
                for heap in FIELD_HEAPS:
                    runs = [run_field(heap, menus, whitelist, ports, pki, ntp.port)
                            for _ in range(repeat)]  # fmt: skip
                    for r in runs:
                        print(heap, json.dumps(r, sort_keys=True), flush=True)
                    label = f"canteen field {heap} (TLS + Wi-Fi + NTP, two 8-day menus)"
                    rows.append(Row(f"{label}: runs that passed", sum(r["ok"] for r in runs),
                                    f"of {repeat}", goal=f"{repeat} of {repeat}"))  # fmt: skip
                    for key, what in zip(STEPS, ("after connect", "after the two menus",
                                                 "after the taps", "offline",
                                                 "after the reconnect"), strict=True):  # fmt: skip
                        got = [r[key] for r in runs if key in r]
                        rows.append(Row(f"{label}: least free heap {what}",
                                        min(got) if got else -1, "bytes"))  # fmt: skip
    finally:
        ntp.close()
    return rows
