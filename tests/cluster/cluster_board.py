"""A board for the cluster tests (D29-C) that counts what the broker promised.

Like a real board it speaks MQTT 3.1.1 QoS 1 and, after a lost connection, re-sends every
publish that was not PUBACKed (paho does that on reconnect). Unlike tests/cloud/fake_board.py it
does NOT re-send a PUBACKed batch on its own while the run goes on: a batch the broker PUBACKed
and then lost would stay lost, so "every PUBACKed event is in PostgreSQL" really tests the
broker and the ingest. :meth:`resend_unacked` is the board's ack timeout, called at the end, so
the protocol's own repair (protocol.md "Ack") is tested too.

When its node goes away the board connects to the next node of the cluster, as a board with
several broker addresses (or one behind a load balancer) would.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

T0 = 1_760_000_000


class ClusterBoard:
    def __init__(self, ports: list[int], prefix: str, device: str, card: str, boot: int = 1,
                 first_node: int = 0) -> None:  # fmt: skip
        self.ports = ports
        self.node = first_node % len(ports)
        self.device = device
        self.card = card
        self.boot = boot
        self.events_topic = f"{prefix}/v1/dev/{device}/events"
        self.ack_topic = f"{prefix}/v1/dev/{device}/ack"
        self._lock = threading.Lock()
        self._seq = 0
        self.batches: dict[int, tuple[int, bytes]] = {}  # first seq -> (last seq, payload)
        self._mid_batch: dict[int, int] = {}  # MQTT message id -> first seq of its batch
        self._early: set[int] = set()  # message ids PUBACKed before _publish recorded them
        self.pubacked: set[int] = set()  # seqs of batches the broker PUBACKed
        self.acked: set[int] = set()  # seqs covered by an application ack from the cloud
        self.connects = 0
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"cb-{prefix}-{device}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        self.client.max_inflight_messages_set(50)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", ports[self.node], keepalive=10)
        self.client.loop_start()

    @property
    def created(self) -> list[tuple[str, int, int]]:
        return [(self.device, self.boot, s) for s in range(1, self._seq + 1)]

    def tap(self, n: int = 1) -> None:
        """n events in one batch (one PUBLISH), published once."""
        with self._lock:
            first = self._seq + 1
            events = []
            for s in range(first, first + n):
                reader = ("in", "out", "canteen")[s % 3]
                events.append(json.dumps(
                    {"boot": self.boot, "seq": s, "t": T0 + s, "sync": 1, "up": 10 * s,
                     "kind": "tap", "reader": reader, "card": self.card, "result": "granted",
                     "reason": "ok"}, separators=(",", ":")).encode())  # fmt: skip
            self._seq = first + n - 1
            head = f'{{"v":1,"dev":"{self.device}","boot":{self.boot},"events":['.encode()
            payload = head + b",".join(events) + b"]}"
            self.batches[first] = (self._seq, payload)
        self._publish(first, payload)

    def _publish(self, first: int, payload: bytes) -> None:
        # Not under self._lock: paho may run on_publish (which takes it) while holding the lock
        # publish() needs. A PUBACK faster than this bookkeeping is parked in _early.
        mid = self.client.publish(self.events_topic, payload, qos=1).mid
        with self._lock:
            if mid in self._early:
                self._early.discard(mid)
                self.pubacked.update(range(first, self.batches[first][0] + 1))
            else:
                self._mid_batch[mid] = first

    def resend_unacked(self) -> int:
        """The board's ack timeout: every batch without an application ack, byte-identical."""
        with self._lock:
            due = [(f, p) for f, (_last, p) in self.batches.items() if f not in self.acked]
        for first, payload in due:
            self._publish(first, payload)
        return len(due)

    def all_acked(self) -> bool:
        with self._lock:
            return len(self.acked) == self._seq

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    # -- paho callbacks (its network thread) ---------------------------------------------------

    def _next_node(self) -> None:
        self.node = (self.node + 1) % len(self.ports)
        # paho's port setter refuses while its loop is reconnecting (state "connecting"), which
        # is exactly when a board moves on; its reconnect reads _port each time.
        self.client._port = self.ports[self.node]

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._next_node()
            return
        self.connects += 1
        client.subscribe(self.ack_topic, qos=1)

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._next_node()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        self._next_node()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._lock:
            first = self._mid_batch.pop(mid, None)
            if first is None:
                self._early.add(mid)
            else:
                self.pubacked.update(range(first, self.batches[first][0] + 1))

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = json.loads(msg.payload)
            boot, first, last = int(ack["boot"]), int(ack["first"]), int(ack["last"])
        except (ValueError, KeyError, TypeError):
            return
        if boot == self.boot:
            with self._lock:
                self.acked.update(range(first, last + 1))
