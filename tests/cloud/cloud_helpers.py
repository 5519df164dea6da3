"""Helpers shared by the cloud tests: payload builders and a small MQTT test client."""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

CARD_A = "0123456789abcdef"
CARD_B = "fedcba9876543210"
T0 = 1_760_000_000  # 2025-10-09T08:53:20Z


@dataclass(frozen=True)
class Seed:
    school: str
    device: str
    other_school: str
    other_device: str
    alice: int  # student of school, card CARD_A
    bob: int  # staff of other school, card CARD_B


def event(seq: int, boot: int = 7, card: str = CARD_A, **over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "boot": boot,
        "seq": seq,
        "t": T0 + seq,
        "sync": 1,
        "up": 1000 * seq,
        "kind": "tap",
        "reader": "in",
        "card": card,
        "result": "granted",
        "reason": "ok",
    }
    ev.update(over)
    return ev


# Every tap a parent-notification note names, one row each (``o``: the note, ``t.seq``): a note
# names its taps as inclusive ranges of seq numbers (D22).
NOTED_TAPS = (
    "outbox o CROSS JOIN jsonb_array_elements(o.payload->'runs') AS r(run)"
    " CROSS JOIN generate_series((r.run->>0)::int8, (r.run->>1)::int8) AS t(seq)"
)


def batch_doc(dev: str = "gate-1", boot: int = 7, seqs: range | list[int] = range(1, 4),
              **event_over: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "v": 1,
        "dev": dev,
        "boot": boot,
        "events": [event(s, boot, **event_over) for s in seqs],
    }


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def topic(prefix: str, dev: str = "gate-1", leaf: str = "events") -> str:
    return f"{prefix}/v1/dev/{dev}/{leaf}"


class Board:
    """A paho client that plays the board: publishes batches, collects acks."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.acks: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe(f"{prefix}/v1/dev/+/ack", qos=1)
        assert self._subscribed.wait(10), "board could not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.acks.put((msg.topic, json.loads(msg.payload)))

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def next_ack(self, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
        return self.acks.get(timeout=timeout)

    def no_ack(self, wait: float) -> bool:
        try:
            self.acks.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def drop_session(host: str, port: int, client_id: str) -> None:
    """Remove a persistent broker session (clean_session=True connect, then disconnect)."""
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    try:
        c.connect(host, port, keepalive=10)
        c.loop_start()
        deadline = time.monotonic() + 5
        while not c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        c.disconnect()
        c.loop_stop()
    except OSError:
        pass


def events_page(client: Any, **params: Any) -> dict[str, Any]:
    """GET /api/v1/events with ``params`` (a fastapi TestClient); the body of its 200."""
    r = client.get("/api/v1/events", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def event_ids(body: dict[str, Any]) -> list[tuple[str, int, int]]:
    """The (device, boot, seq) of a page's items, in order."""
    return [(i["device"], i["boot"], i["seq"]) for i in body["items"]]
