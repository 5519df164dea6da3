"""OTA transfer time of the firmware image (issue #14 item 6, docs/ota.md): one simulated board
flashed with the OTA layout (simulator/ota_board.py, the firmware in the MicroPython VM at its
64 KiB heap) fetches a signed release of today's firmware (its ROMFS image, ~84 KB) from the OTA
worker (cloud/workers/ota_push.py) through a private Mosquitto: 1,024-byte chunks asked for in
windows of 8, appended to flash as they come.

``python -m bench ota``. Rows: the transfer (from the offer to the last byte on the board's
flash), bytes and KB/s; the whole update (offer to the cloud seeing the new image confirmed:
transfer, restart, the bootstrap's sha256 + Ed25519 check, restart on trial, the trial ack);
the Ed25519 verification alone in the VM at the board's heap (time and heap it takes); the free
heap of a 64 KiB door booted from a slot and on trial, against the plain ROMFS door. Baseline
in the same run: one raw MQTT QoS 1 publish of the same bytes from a paho client to a paho
subscriber through the same broker (the broker's and the clients' floor for moving them).
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import REPO, Row, database, median, mosquitto, report
from cloud.ota import releases, rollouts
from cloud.settings import Settings
from cloud.workers.ota_push import OtaPush
from simulator.board import (
    FIRMWARE,
    BoardConfig,
    VirtualBoard,
    firmware_bundle,
    micropython_binary,
)
from simulator.ota_board import OtaBoard
from tools.release import build_image, public_key, sign

SITE_KEY = b"k" * 32


def _update(url: str, port: int, settings: Settings, key: Ed25519PrivateKey, device: str,
            version: str) -> tuple[float, float]:  # fmt: skip
    """(transfer s, whole update s) of one board taking release `version`."""
    marks: dict[str, float] = {}

    def echo(_dev: str, line: str) -> None:
        if line.startswith("@ota") and '"check":1' in line:
            marks.setdefault("fetched", time.monotonic())

    cfg = BoardConfig(device, "b1", SITE_KEY, mqtt_port=port, prefix=settings.topic_prefix,
                      extra={"ota_pub": public_key(key), "heartbeat_s": 30})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="qadam-bench-ota-") as d:
        board = OtaBoard(cfg, Path(d) / "flash", echo=echo)
        board.write_flash(None)
        board.start()
        try:
            deadline = time.monotonic() + 30
            while not _fw(url, device).get("online"):
                assert time.monotonic() < deadline, "the board did not come online"
                time.sleep(0.05)
            with psycopg.connect(url) as conn:
                t0 = time.monotonic()
                rollouts.create(conn, version, [device], [], 600, "bench")
            deadline = t0 + 120
            while _fw(url, device).get("version") != version or _fw(url, device).get("trial"):
                assert time.monotonic() < deadline, f"no update: {_fw(url, device)}"
                if not board.running:  # the firmware reset itself: power on again
                    board.power_cut()
                    try:
                        board.start()
                    except Exception:
                        pass
                time.sleep(0.02)
            whole = time.monotonic() - t0
        finally:
            board.stop()
    return marks["fetched"] - t0, whole


def _heap(port: int, prefix: str, ota: bool, trial: bool = False) -> int:
    """Free heap of a door board at 64 KiB, connected (no ingest): booted by the OTA bootstrap
    from slot a (on trial in slot b with `trial`), or the plain ROMFS board."""
    import json

    cfg = BoardConfig(f"heap-{int(ota)}{int(trial)}", "b1", SITE_KEY, mqtt_port=port,
                      prefix=prefix, extra={"ota_pub": "00" * 32} if ota else {})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="qadam-bench-ota-") as d:
        flash = Path(d) / "flash"
        board = (OtaBoard if ota else VirtualBoard)(cfg, flash)
        board.write_flash(None)
        if trial:
            (flash / "slot_b.rom").write_bytes((flash / "slot_a.rom").read_bytes())
            (flash / "ota.json").write_text(json.dumps(
                {"act": "a", "try": "b", "left": 3, "ver": {"b": "9.9.9"}, "rb": None}))
        board.start()
        try:
            board.wait_for(lambda: board.mqtt_up, 30, "to connect")
            time.sleep(1.5)
            return int(median([board.stat()["heap"] for _ in range(3)]))
        finally:
            board.stop()


def _fw(url: str, device: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT version, trial, online FROM device_firmware WHERE device_id = %s", (device,)
        ).fetchone()
    return {} if row is None else {"version": row[0], "trial": row[1], "online": row[2]}


def _raw_publish(port: int, data: bytes) -> float:
    """Seconds for one QoS 1 publish of `data` from one paho client to another's callback."""
    topic = f"bench/ota/{uuid.uuid4().hex[:8]}"
    got = threading.Event()
    sub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    sub.on_message = lambda _c, _u, m: got.set() if len(m.payload) == len(data) else None
    sub.connect("127.0.0.1", port)
    sub.subscribe(topic, 1)
    sub.loop_start()
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    time.sleep(0.3)  # the subscription is in place
    t0 = time.monotonic()
    pub.publish(topic, data, qos=1)
    assert got.wait(30)
    took = time.monotonic() - t0
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return took


VERIFY = """\
import sys, gc, time
sys.path.append({fw!r})
gc.collect()
f0 = gc.mem_free()
from ota.ed25519 import verify
gc.collect()
f1 = gc.mem_free()
pub = bytes.fromhex({pub!r}); sig = bytes.fromhex({sig!r}); msg = {msg!r}
low = f1
t = time.ticks_us()
ok = verify(pub, msg, sig)
dt = time.ticks_diff(time.ticks_us(), t)
print("@verify", ok, dt, f0 - f1, gc.mem_free())
"""


def _verify_in_vm(key: Ed25519PrivateKey, doc: dict[str, Any]) -> tuple[float, int]:
    """(ms, bytes the module keeps loaded) of one Ed25519 verification in the VM at 64 KiB."""
    msg = releases.signed_message(doc["version"], doc["size"], doc["sha256"])
    script = VERIFY.format(fw=str(firmware_bundle()), pub=public_key(key), sig=doc["signature"],
                           msg=msg)  # fmt: skip
    out = subprocess.run([micropython_binary(), "-X", "heapsize=64K", "-c", script],
                         capture_output=True, text=True, cwd=REPO, timeout=60)  # fmt: skip
    line = next(x for x in out.stdout.splitlines() if x.startswith("@verify"))
    _, ok, us, kept, _free = line.split()
    assert ok == "True", out.stdout + out.stderr
    return int(us) / 1000, int(kept)


def run(repeat: int = 3) -> list[Row]:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench release key").digest())
    image = build_image(FIRMWARE)
    transfer: list[float] = []
    whole: list[float] = []
    raw: list[float] = []
    with mosquitto() as port, database(repeat) as url:
        settings = Settings(database_url=url, mqtt_host="127.0.0.1", mqtt_port=port,
                            topic_prefix=f"bota{uuid.uuid4().hex[:6]}",
                            ota_public_key=public_key(key), ota_poll_ms=100)  # fmt: skip
        docs = [sign(key, f"9.{r}.0", image) for r in range(repeat)]
        with psycopg.connect(url) as conn:
            for doc in docs:
                releases.publish(conn, settings.ota_public_key, doc["version"], image,
                                 doc["sha256"], doc["signature"], "", "bench")  # fmt: skip
        worker = OtaPush(settings)
        worker.start()
        try:
            for r in range(repeat):
                t, w = _update(url, port, settings, key, f"bench-{r}", docs[r]["version"])
                transfer.append(t)
                whole.append(w)
                raw.append(_raw_publish(port, image))
        finally:
            worker.stop()
        plain = _heap(port, settings.topic_prefix, False)
        slots = _heap(port, settings.topic_prefix, True)
        trial = _heap(port, settings.topic_prefix, True, True)
    ms, kept = _verify_in_vm(key, docs[0])
    t = median(transfer)
    base = median(raw)
    kb = len(image) / 1024
    return [
        Row("OTA image transfer (offer to last byte on flash)", t, "s", baseline=base,
            ratio=base / t),
        Row("OTA image size", len(image), "bytes"),
        Row("OTA transfer rate", kb / t, "KB/s", baseline=kb / base, ratio=(kb / t) / (kb / base)),
        Row("whole update (offer to confirmed: transfer, check, trial, ack)", median(whole), "s"),
        Row("Ed25519 verify in the VM (64 KiB heap)", ms, "ms"),
        Row("Ed25519 module heap while loaded (.mpy in the heap)", kept, "bytes"),
        Row("door 64K booted from a slot: free heap after connect", slots, "bytes",
            baseline=plain, ratio=slots / plain, goal=">= 8192"),
        Row("door 64K on trial: free heap after connect", trial, "bytes", baseline=plain,
            ratio=trial / plain, goal=">= 8192"),
    ]  # fmt: skip


if __name__ == "__main__":
    report("ota", run())
