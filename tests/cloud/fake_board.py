"""A small Python board for fault tests: a journal of byte-identical events, one batch in flight,
re-sent from the oldest record after every (re)connect and whenever no ack came within the ack
timeout, trimmed only by an ack that covers the oldest record (docs/protocol.md, "Ack")."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

T0 = 1_760_000_000


class FakeBoard:
    def __init__(self, host: str, port: int, prefix: str, device: str, card: str,
                 boot: int = 1, batch_max: int = 8, ack_timeout: float = 1.0) -> None:  # fmt: skip
        self.device = device
        self.boot = boot
        self.card = card
        self.batch_max = batch_max
        self.ack_timeout = ack_timeout
        self.events_topic = f"{prefix}/v1/dev/{device}/events"
        self.ack_topic = f"{prefix}/v1/dev/{device}/ack"
        self.journal: list[tuple[int, bytes]] = []  # (seq, event bytes as stored)
        self.created: list[tuple[str, int, int]] = []
        self.sent = 0  # batches published, retransmissions included
        self._seq = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._inflight_at: float | None = None  # when the current batch was sent
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"fb-{prefix}-{device}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, keepalive=10)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name=f"board-{device}", daemon=True)
        self._thread.start()

    # -- the board's side ------------------------------------------------------------------

    def tap(self, n: int = 1) -> None:
        with self._lock:
            for _ in range(n):
                self._seq += 1
                s = self._seq
                reader = ("in", "out", "canteen")[s % 3]
                ev = {"boot": self.boot, "seq": s, "t": T0 + s, "sync": 1, "up": 10 * s,
                      "kind": "tap", "reader": reader, "card": self.card, "result": "granted",
                      "reason": "ok"}  # fmt: skip
                self.journal.append((s, json.dumps(ev, separators=(",", ":")).encode()))
                self.created.append((self.device, self.boot, s))
        self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self.journal)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            return
        client.subscribe(self.ack_topic, qos=1)
        with self._lock:
            self._inflight_at = None  # re-send from the oldest record after every (re)connect
        self._wake.set()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = json.loads(msg.payload)
            boot, first, last = ack["boot"], ack["first"], ack["last"]
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            if not self.journal:
                return
            oldest = self.journal[0][0]
            if boot != self.boot or not first <= oldest <= last:
                return  # protocol.md: any other ack is ignored
            self.journal = [(s, e) for s, e in self.journal if s > last]
            self._inflight_at = None
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.05)
            self._wake.clear()
            with self._lock:
                due = self.journal and (
                    self._inflight_at is None
                    or time.monotonic() - self._inflight_at > self.ack_timeout
                )
                if not due or not self.client.is_connected():
                    continue
                events = [e for _, e in self.journal[: self.batch_max]]
                self._inflight_at = time.monotonic()
            head = f'{{"v":1,"dev":"{self.device}","boot":{self.boot},"events":['.encode()
            self.client.publish(self.events_topic, head + b",".join(events) + b"]}", qos=1)
            self.sent += 1


def tap_until(boards: list[FakeBoard], stop: threading.Event,
              interval: float = 0.02) -> threading.Thread:  # fmt: skip
    """Tap one event on every board every ``interval`` seconds until ``stop`` is set."""

    def run() -> None:
        while not stop.wait(interval):
            for b in boards:
                b.tap()

    t = threading.Thread(target=run, name="tapper", daemon=True)
    t.start()
    return t
