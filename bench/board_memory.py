"""Free heap of a simulated board (the real firmware in the MicroPython VM from its ROMFS image,
docs/decisions.md D7/D11/D16) after it connected and after a burst of 300 taps, for three board
configurations: a plain door, a turnstile (2 relays + passage sensors) and a turnstile with
anti-passback and schedules. Each in the 64 KiB heap of issue #3 against the 100 KiB of a plain
ESP32 (the baseline, in the same run). The batch size cap (``bb``, bytes of payload) is reported
too; since batches are rendered from the journal into the socket it no longer shrinks with the
heap (docs/decisions.md D16).

TLS rows (issue #14 part 2, docs/decisions.md D25-K): the door board connected to a private
Mosquitto's TLS listener (a CA made for the run, tests/tls_broker.py), its CA verified, at the
plain board's 64 KiB and at TLS_HEAP; the session's cost is the plain door's free heap minus the
TLS door's, in the same heap.

``python -m bench board_memory``. Needs Mosquitto (a private one is started). A board that does
not boot or connect reports -1. A row per board says whether it meets the goal at 64 KiB
(boots, connects, takes the burst with every event acked, >= 8 KiB free after connect and
after the burst, no MemoryError) and, if not, what it lacks.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import struct
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.common import Row, mosquitto
from simulator.board import DEFAULT_HEAP, TLS_HEAP, BoardConfig, BoardError, VirtualBoard

SITE_KEY = bytes(range(16))
# Every board has an ack key, as a provisioned one does (protocol.md "Ack"): the acker signs.
ACK_KEY = bytes(range(32))
TAPS = 300
TURNSTILE = {
    "hal": "sim",
    "relays": [{"reader": "in", "pulse_ms": 300}, {"reader": "out", "pulse_ms": 300}],
    "passage_sensors": [{"reader": "in"}, {"reader": "out"}],
}
PROFILES = {
    "1": {"days": "1234567", "from": "00:00", "to": "24:00"},
    "2": {"days": "12345", "from": "07:00", "to": "18:00", "staff": "window"},
}
# name -> (board.json, device.json extras)
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "door": ({"hal": "sim"}, {}),
    "turnstile": (TURNSTILE, {"passage_timeout_ms": 500}),
    "turnstile_apb_sched": (
        TURNSTILE,
        {"passage_timeout_ms": 500, "antipassback": True, "profiles": PROFILES},
    ),
}

# The heap each configuration is budgeted (>= GOAL_FREE free after connect and after a burst):
# the plain board's 64 KiB (D16), except the turnstile with anti-passback and schedules, which
# the ack key (D24-B) and the window of batches (D25-L) took below the goal there (D26).
BUDGET: dict[str, str] = {"turnstile_apb_sched": "72K"}


def uid(i: int) -> bytes:
    return b"\x04" + i.to_bytes(3, "big")


def card_key(uid_: bytes) -> bytes:
    return hashlib.sha256(SITE_KEY + uid_).digest()[:8]


def whitelist(n: int) -> bytes:
    """Format 1 (protocol.md): every card a student (attrs 1) with access profile 1."""
    recs = b"".join(sorted(card_key(uid(i)) + bytes([1, 1, 0, 0]) for i in range(n)))
    crc = binascii.crc32(recs) & 0xFFFFFFFF
    return b"QWL1" + struct.pack("<HHIII", 1, 12, 1, n, crc) + bytes(12) + recs


class Acker:
    """Plays the cloud: acks every event batch the boards publish (protocol.md "Ack")."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.events = 0
        self._lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="acker-" + prefix)
        self.c.on_message = self._on_message
        self.c.connect(host, port)
        self.c.loop_start()
        self.c.subscribe(f"{prefix}/v1/dev/+/events", 1)
        time.sleep(0.3)

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        b = json.loads(m.payload)
        seqs = [e["seq"] for e in b["events"]]
        with self._lock:
            self.events += len(seqs)
        ack = {"v": 1, "boot": b["boot"], "first": seqs[0], "last": seqs[-1]}
        msg = b"%s|%d|%d|%d" % (b["dev"].encode(), b["boot"], seqs[0], seqs[-1])
        ack["mac"] = hmac.new(ACK_KEY, msg, hashlib.sha256).hexdigest()[:32]
        self.c.publish(m.topic.rsplit("/", 1)[0] + "/ack", json.dumps(ack), qos=1)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def run_board(
    name: str,
    romfs: bool,
    flash: Path,
    host: str,
    port: int,
    prefix: str,
    taps: int = TAPS,
    heap: str = DEFAULT_HEAP,
    tls: tuple[Path, int] | None = None,
) -> dict[str, Any]:
    """Boot one board, connect, tap `taps` cards, drain the journal. -> heap figures and counts;
    {"booted": False, ...} if it never reported @ready. `tls`: (PKI folder of
    tests.tls_broker.make_pki, TLS port): the board connects there with mqtt.tls and the CA,
    the acker on `port` (the broker's plain listener)."""
    board_json, extra = CONFIGS[name]
    cfg = BoardConfig(device=f"mem-{name}", school="s1", site_key=SITE_KEY, mqtt_host=host,
                      mqtt_port=tls[1] if tls else port, prefix=prefix,
                      extra=dict(extra, ack_key=ACK_KEY.hex()))  # fmt: skip
    if tls:
        cfg.extra["mqtt"] = dict(cfg.device_json()["mqtt"], tls=True, ca="ca.pem")
    b = VirtualBoard(cfg, flash, romfs=romfs, heap=heap)
    b.write_flash(whitelist(taps))
    (b.flash / "board.json").write_text(json.dumps(board_json))
    if tls:
        (b.flash / "ca.pem").write_bytes((tls[0] / "ca.pem").read_bytes())
    out: dict[str, Any] = {"config": name, "romfs": romfs, "heap": heap, "booted": False,
                           "tls": bool(tls)}  # fmt: skip
    acker = Acker(host, port, prefix)
    try:
        try:
            b.start()
        except BoardError as e:
            out["error"] = str(e).splitlines()[-1]
            return out
        out["booted"] = True
        try:
            b.wait_for(lambda: b.mqtt_up, 15, "to connect")
            out["heap_connect"] = b.stat()["heap"]
            for i in range(taps):
                b.tap(uid(i), "in")
            b.wait_drained(60)
            if "passage_timeout_ms" in extra:
                # The last grant's not_passed comes one passage timeout after it: a journal
                # that drains faster than that (the window of batches, D25-L) is empty before.
                time.sleep(extra["passage_timeout_ms"] / 1000 + 0.3)
                b.wait_drained(60)
            st = b.stat()
        except BoardError as e:
            out["error"] = str(e).splitlines()[0]
            return out
        out.update(heap_after=st["heap"], taps=st["taps"], acked=st["acked"],
                   journal=st["journal"], batch_bytes=st["bb"],
                   cloud_events=acker.events)  # fmt: skip
    finally:
        b.stop()
        acker.close()
        out["memory_errors"] = sum("MemoryError" in line for line in b.output)
    return out


HEAPS = ("64K", "100K")  # measured, baseline
# The TLS rows measure the door at the plain board's 64 KiB, at 72 KiB and at the heap a TLS board
# gets (simulator.board.TLS_HEAP, docs/decisions.md D25-K).
TLS_HEAPS = ("64K", "72K", TLS_HEAP)
GOAL_FREE = 8192  # issue #3: 8 KiB of headroom after connect and after the burst


def meets_goal(r: dict[str, Any]) -> bool:
    """Booted, connected, every tap decided and acked by the cloud, >= 8 KiB free after connect
    and after the burst, and no MemoryError on the way."""
    return (r.get("heap_connect", -1) >= GOAL_FREE and r.get("heap_after", -1) >= GOAL_FREE
            and r.get("taps") == TAPS and r.get("journal") == 0
            and r.get("acked", 0) >= TAPS and not r.get("memory_errors"))  # fmt: skip


def shortfall(r: dict[str, Any]) -> str:
    if not r.get("booted"):
        return "does not boot"
    if "heap_connect" not in r:
        return "does not connect"
    if "heap_after" not in r:
        return "does not take the burst"
    low = min(r["heap_connect"], r["heap_after"])
    if low < GOAL_FREE:
        return f"{GOAL_FREE - low} bytes short"
    return "MemoryError on the way" if r.get("memory_errors") else "events not all acked"


def run(repeat: int = 1) -> list[Row]:
    del repeat  # heap figures are deterministic enough; one run each
    rows: list[Row] = []
    plain_door = None
    with mosquitto() as port, tempfile.TemporaryDirectory(prefix="qadam-bench-mem-") as d:
        for name in CONFIGS:
            res = {}
            for heap in HEAPS:
                prefix = f"bm{uuid.uuid4().hex[:8]}"
                flash = Path(d) / f"{name}-{heap}"
                r = run_board(name, True, flash, "127.0.0.1", port, prefix, heap=heap)
                res[heap] = r
                print(json.dumps(r, sort_keys=True), flush=True)
            got, base = res[HEAPS[0]], res[HEAPS[1]]
            for key, label in (("heap_connect", "after connect"), ("heap_after", "after 300 taps")):
                b = base.get(key, -1)
                rows.append(Row(f"{name} {HEAPS[0]}: free heap {label}", got.get(key, -1),
                                "bytes", baseline=b if b > 0 else None,
                                goal=">= 8192"))  # fmt: skip
            b = base.get("batch_bytes", -1)
            rows.append(Row(f"{name} {HEAPS[0]}: batch size cap", got.get("batch_bytes", -1),
                            "bytes", baseline=b if b > 0 else None))  # fmt: skip
            rows.append(Row(f"{name} {HEAPS[0]}: MemoryError lines", got["memory_errors"],
                            "lines", baseline=base["memory_errors"] or None))  # fmt: skip
            ok = meets_goal(got)
            rows.append(Row(f"{name} {HEAPS[0]}: meets the goal", int(ok), "1/0",
                            goal="PASS" if ok else "FAIL: " + shortfall(got)))  # fmt: skip
            if name == "door":
                plain_door = res
    rows += tls_rows(plain_door)
    return rows


def tls_rows(plain: dict[str, dict[str, Any]] | None = None) -> list[Row]:
    """The door over TLS at each of TLS_HEAPS; `plain`: the plain door's results by heap (the
    baseline: what the TLS session costs), measured here if not given."""
    from tests.tls_broker import tls_mosquitto

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="qadam-bench-tls-") as d:
        pki = Path(d) / "pki"
        with tls_mosquitto(pki) as (tls_port, port):
            for heap in TLS_HEAPS:
                prefix = f"bm{uuid.uuid4().hex[:8]}"
                if plain is None or heap not in plain:
                    flash = Path(d) / f"plain-{heap}"
                    p = run_board("door", True, flash, "127.0.0.1", port, prefix, heap=heap)
                    print(json.dumps(p, sort_keys=True), flush=True)
                else:
                    p = plain[heap]
                flash = Path(d) / f"tls-{heap}"
                r = run_board("door", True, flash, "127.0.0.1", port, prefix, heap=heap,
                              tls=(pki, tls_port))  # fmt: skip
                print(json.dumps(r, sort_keys=True), flush=True)
                for key, label in (("heap_connect", "after connect"),
                                   ("heap_after", "after 300 taps")):  # fmt: skip
                    b = p.get(key, -1)
                    rows.append(Row(f"door TLS {heap}: free heap {label}", r.get(key, -1),
                                    "bytes", baseline=b if b > 0 else None,
                                    goal=">= 8192"))  # fmt: skip
                got, base = r.get("heap_connect", -1), p.get("heap_connect", -1)
                cost = base - got if got > 0 and base > 0 else -1
                rows.append(Row(f"door TLS {heap}: heap the TLS session costs", cost, "bytes"))
                ok = meets_goal(r)
                rows.append(Row(f"door TLS {heap}: meets the goal", int(ok), "1/0",
                                goal="PASS" if ok else "FAIL: " + shortfall(r)))  # fmt: skip
    return rows


if __name__ == "__main__":
    import sys

    from bench.common import report

    report("board_memory", tls_rows() if "--tls" in sys.argv else run())
