"""Integration: the unchanged firmware in the MicroPython VM (sim HAL, 64 KiB heap) against the
real Mosquitto. paho-mqtt plays the cloud by hand: receives batches, sends (or withholds) acks."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from simulator.board import LARGE_HEAP, firmware_bundle, micropython_binary

HERE = Path(__file__).resolve().parent
FIRMWARE = HERE.parent.parent / "firmware"
sys.path.append(str(HERE / "cases"))
from fwhelpers import whitelist_bytes  # noqa: E402
from store.cardkey import card_key  # noqa: E402  (firmware/ is on sys.path via conftest)

SITE_KEY = bytes(range(16))
KNOWN_UID = "04a1b2c3"
UNKNOWN_UID = "0badcafe"
# The device id is the MQTT client id: unique per test process so parallel runs on the shared
# broker never take over each other's connection.
DEVICE = f"gate-{uuid.uuid4().hex[:8]}"
EVENT_KEYS = {"boot", "seq", "t", "sync", "up", "kind", "reader", "card", "result", "reason"}


class Board:
    """One virtual board process; collects its "@tag {json}" lines."""

    def __init__(self, flash: Path) -> None:
        # The whole board runs as the simulator runs it: the .mpy bundle in a board-sized heap
        # (docs/decisions.md D7).
        self.proc = subprocess.Popen(
            [micropython_binary(), "-X", f"heapsize={LARGE_HEAP}",
             str(firmware_bundle() / "main.py")],
            cwd=flash, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.log.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))

    def send(self, cmd: str) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()

    def expect(self, tag: str, timeout: float = 10.0, **match: object) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"no @{tag} {match} within {timeout}s; log:\n" + "\n".join(self.log)
                ) from None
            if line.startswith("@" + tag + " "):
                obj = json.loads(line.split(" ", 1)[1])
                if all(obj.get(k) == v for k, v in match.items()):
                    return obj

    def read_until(self, match: Callable[[str], bool], timeout: float = 10.0) -> list[str]:
        """Read lines (human-readable ones too, e.g. the sim HAL's "# led green on") until one
        satisfies match; return them all, that one last."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(
                    f"no matching line within {timeout}s; log:\n" + "\n".join(self.log)
                ) from None
            seen.append(line)
            if match(line):
                return seen

    def no_line(self, tag: str, wait: float) -> None:
        time.sleep(wait)
        while not self.lines.empty():
            line = self.lines.get()
            assert not line.startswith("@" + tag + " "), line

    def quit(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            self.expect("bye")
            self.proc.wait(timeout=10)
        assert self.proc.returncode == 0, "\n".join(self.log)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def raw_events(payload: bytes) -> list[bytes]:
    """The events of a batch as the exact bytes on the wire."""
    text = payload.decode()
    i = text.index('"events":[') + len('"events":[')
    dec = json.JSONDecoder()
    out = []
    while text[i] != "]":
        _, end = dec.raw_decode(text, i)
        out.append(text[i:end].encode())
        i = end + 1 if text[end] == "," else end
    return out


@pytest.fixture
def flash(tmp_path: Path, topic_prefix: str, mqtt_addr: tuple[str, int]) -> Path:
    host, port = mqtt_addr
    dev = {
        "device": DEVICE, "school": "s1", "site_key": SITE_KEY.hex(), "reader": "in",
        "relay_ms": 300, "ack_timeout_ms": 60000, "batch": 32, "clock_synced": True,
        "mqtt": {"host": host, "port": port, "prefix": topic_prefix, "user": None,
                 "password": None, "keepalive": 30},
    }
    (tmp_path / "device.json").write_text(json.dumps(dev))
    (tmp_path / "board.json").write_text('{"hal":"sim"}')
    known = card_key(SITE_KEY, bytes.fromhex(KNOWN_UID))
    (tmp_path / "whitelist.bin").write_bytes(whitelist_bytes(3, [known]))
    return tmp_path


@pytest.fixture
def cloud(topic_prefix: str, mqtt_addr: tuple[str, int]):
    msgs: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="cloud-" + topic_prefix)
    c.on_message = lambda _c, _u, m: msgs.put((m.topic, bytes(m.payload), bool(m.retain)))
    c.connect(*mqtt_addr)
    c.loop_start()
    base = f"{topic_prefix}/v1/dev/{DEVICE}/"
    c.subscribe([(base + "events", 1), (base + "status", 1)])
    time.sleep(0.3)
    c.msgs = msgs
    c.base = base
    yield c
    c.publish(base + "status", b"", qos=1, retain=True)  # leave no retained message behind
    c.loop_stop()
    c.disconnect()


def next_msg(c, leaf: str, timeout: float = 10.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            topic, payload, _ = c.msgs.get(timeout=0.2)
        except queue.Empty:
            continue
        if topic == c.base + leaf and payload:
            return payload
    raise AssertionError(f"no message on {leaf} within {timeout}s")


def check_batch(payload: bytes, boot: int) -> dict:
    b = json.loads(payload)
    assert b["v"] == 1 and b["dev"] == DEVICE and b["boot"] == boot
    assert 1 <= len(b["events"]) <= 32
    seqs = [e["seq"] for e in b["events"]]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    for e in b["events"]:
        assert EVENT_KEYS <= set(e) and e["boot"] == boot and e["kind"] == "tap"
        assert len(e["card"]) == 16 and e["sync"] == 1 and abs(e["t"] - time.time()) < 60
    return b


def test_board_batches_acks_and_byte_identical_resend(flash: Path, cloud) -> None:
    board = Board(flash)
    try:
        ready = board.expect("ready")
        assert ready == {"dev": DEVICE, "boot": 1, "wl": 3, "journal": 0}
        board.expect("mqtt", up=True)
        assert json.loads(next_msg(cloud, "status"))["online"] is True

        board.send(f"tap {KNOWN_UID}")
        board.expect("relay", on=1)  # the relay switches before the event is journaled
        # ... and so does the LED (the sim HAL logs every LED switch): green on, red stays off.
        seen = board.read_until(lambda x: x.startswith("@tap "))
        assert "# led green on" in seen and "# led red on" not in seen, seen
        tap = json.loads(seen[-1].split(" ", 1)[1])
        known_hex = card_key(SITE_KEY, bytes.fromhex(KNOWN_UID)).hex()
        assert tap == {"boot": 1, "seq": 1, "card": known_hex, "reader": "in",
                       "result": "granted", "reason": "ok"}
        board.expect("relay", on=0)
        board.read_until(lambda x: x == "# led green off")  # the LED goes off with the relay
        board.send(f"tap {UNKNOWN_UID} out")
        # A denied tap: red on, before the event is journaled; neither relay nor green switch.
        seen = board.read_until(lambda x: x.startswith("@tap "))
        assert "# led red on" in seen, seen
        assert not [x for x in seen if x.startswith(("@relay", "# led green"))], seen
        tap2 = json.loads(seen[-1].split(" ", 1)[1])
        assert tap2["seq"] == 2
        assert tap2["result"] == "denied" and tap2["reason"] == "unknown_card"
        assert tap2["reader"] == "out"

        first = next_msg(cloud, "events")
        batch = check_batch(first, boot=1)
        assert batch["events"][0]["seq"] == 1
        sent = dict(zip([e["seq"] for e in batch["events"]], raw_events(first), strict=True))

        # PUBACK happened, but no application ack: the journal keeps everything.
        board.send("stat")
        assert board.expect("stat")["journal"] == 2
        # An ack that does not cover the oldest record is ignored.
        cloud.publish(cloud.base + "ack", b'{"v":1,"boot":1,"first":2,"last":2}', qos=1)
        board.no_line("ack", 1.0)
        board.send("stat")
        assert board.expect("stat")["journal"] == 2
        board.quit()
        st = json.loads(next_msg(cloud, "status"))
        while st.get("online"):  # an ack for a seq not yet published is recorded in "err"
            st = json.loads(next_msg(cloud, "status"))
        assert st == {"v": 1, "online": False}  # the will

        # Restart without acking: new boot, same journal, re-sent from the oldest record.
        board = Board(flash)
        assert board.expect("ready") == {"dev": DEVICE, "boot": 2, "wl": 3, "journal": 2}
        again = next_msg(cloud, "events")
        batch2 = check_batch(again, boot=1)
        resent = dict(zip([e["seq"] for e in batch2["events"]], raw_events(again), strict=True))
        assert sorted(resent) == [1, 2]
        for seq, raw in sent.items():
            assert resent[seq] == raw, seq  # byte-identical per event

        cloud.publish(cloud.base + "ack", b'{"v":1,"boot":1,"first":1,"last":2}', qos=1)
        assert board.expect("ack") == {"boot": 1, "last": 2, "journal": 0}
        board.send("stat")
        st = board.expect("stat")
        assert st["journal"] == 0 and st["acked"] == 2 and st["mqtt"] is True
        board.quit()
    finally:
        board.kill()
