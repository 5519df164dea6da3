"""Canteen balance distribution: keeps every canteen board on its school's current balances
(docs/protocol.md "Canteen balances", decision D15).

- **Dirty schools.** Every ``balance_poll_ms`` it claims the schools marked in ``balance_dirty``
  (triggers on balances, cards and people, migration 0010) whose first mark is at least
  ``balance_debounce_ms`` old, so a burst of charges or top-ups becomes one push, and pushes to
  each of their online canteen boards.
- **Status.** A canteen board reports the push version it runs (``bal``) in its status; one that
  differs from the school's current version gets the current balances (at most once per
  ``RESEND_S`` per version, unless the version changed).
- **Push.** One snapshot per school (balances by card + each board's watermark), chunked to
  ``{prefix}/v1/dev/{device}/bal``, QoS 1, in order (:mod:`cloud.ledger.push`).

Run: ``python -m cloud.workers.balance_push`` (settings from ``QADAM_*``), or in-process with
``BalancePush(settings).start()`` / ``.stop()``.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.reasoncodes import ReasonCode

from cloud.db.conn import connect
from cloud.ledger import push as bp
from cloud.mqtt_client import make_client
from cloud.settings import Settings, get_settings
from cloud.signals import run_until_signalled

log = logging.getLogger("qadam.balances")

RESEND_S = 15.0
STATUS_MAX = 4096
_RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)


def parse_bal(payload: bytes) -> int | None:
    """The push version an online canteen board reports, or None (not one, offline, bad)."""
    if not payload or len(payload) > STATUS_MAX:
        return None
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("v") != 1 or doc.get("online") is not True:
        return None
    bal = doc.get("bal")
    if isinstance(bal, bool) or not isinstance(bal, int) or not 0 <= bal <= bp.U32:
        return None
    return bal


class BalancePush:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._base = f"{settings.topic_prefix}/v1/dev/"
        self._queue: queue.Queue[tuple[str, int]] = queue.Queue(maxsize=100_000)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._sent: dict[str, tuple[int, float]] = {}  # device -> (version, when)
        self._started = False
        self.stats = {"claimed": 0, "pushes": 0, "chunks": 0, "errors": 0}
        cid = settings.balance_client_id or f"qadam-bal-{uuid.uuid4().hex[:10]}"
        self._client = make_client(settings, cid, self, clean_session=True)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            raise RuntimeError("BalancePush already started")
        self._started = True
        self._thread = threading.Thread(target=self._run, name="balance-push", daemon=True)
        self._thread.start()
        self._client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self._client.loop_start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._drop_connection()
        log.info("balance worker stopped %s", self.stats)

    def run_forever(self) -> None:
        run_until_signalled(self.start, self.stop)

    # -- MQTT (paho network thread) ----------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            log.error("mqtt connect failed reason=%s", rc)
            return
        client.subscribe(self._base + "+/status", 1)

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        self._ready.clear()

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _m: int, rcs: list[ReasonCode], _p: object
    ) -> None:
        if not any(rc.is_failure for rc in rcs):
            self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            return
        rest = topic[len(self._base) :] if topic.startswith(self._base) else ""
        device, _, leaf = rest.partition("/")
        bal = parse_bal(bytes(msg.payload)) if device and leaf == "status" else None
        if bal is None:
            return  # not a canteen board, or offline
        try:
            self._queue.put_nowait((device, bal))
        except queue.Full:
            log.warning("balance worker queue full; dropped a status of %s", device)

    # -- worker thread -----------------------------------------------------------------------
    def _run(self) -> None:
        poll_s = self.settings.balance_poll_ms / 1000
        next_poll = 0.0
        while not self._stopping.is_set():
            try:
                conn = self._connection()
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + poll_s
                    for school in bp.claim_due(conn, self.settings.balance_debounce_ms):
                        self.stats["claimed"] += 1
                        self._push(conn, school, bp.canteen_devices(conn, school))
                try:
                    device, bal = self._queue.get(timeout=max(0.0, min(0.2, next_poll - now)))
                except queue.Empty:
                    continue
                self._on_status(conn, device, bal)
            except _RETRYABLE as e:
                log.warning("balance worker db error=%s; reconnecting", type(e).__name__)
                self._drop_connection()
                self._stopping.wait(1.0)
            except Exception:
                self.stats["errors"] += 1
                log.exception("balance worker error")
                self._stopping.wait(1.0)

    def _on_status(self, conn: psycopg.Connection[Any], device: str, bal: int) -> None:
        school = bp.device_school(conn, device)
        if school is None:
            return  # not a registered device (D4)
        version = bp.current_version(conn, school)
        prev = self._sent.get(device)
        if bal == version or (
            prev is not None and prev[0] == version and time.monotonic() - prev[1] < RESEND_S
        ):
            return
        self._push(conn, school, [device])

    def _push(self, conn: psycopg.Connection[Any], school: str, devices: list[str]) -> None:
        if not devices:
            return
        snap = bp.snapshot(conn, school, devices)
        for device in devices:
            boot, seq = snap.marks[device]
            msgs = bp.chunks(snap, boot, seq)
            for m in msgs:
                self._client.publish(f"{self._base}{device}/bal", m, qos=1)
            self._sent[device] = (snap.version, time.monotonic())
            self.stats["pushes"] += 1
            self.stats["chunks"] += len(msgs)
            log.info(
                "balance push device=%s school=%s version=%d cards=%d watermark=%d/%d chunks=%d",
                device, school, snap.version, snap.count, boot, seq, len(msgs),
            )  # fmt: skip
        conn.execute(
            "UPDATE balance_push_state SET cards = %s, pushed_at = now() WHERE school_id = %s",
            (snap.count, school),
        )

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop_connection()
            self._conn = connect(
                self.settings.database_url, autocommit=True, application_name="qadam-balances"
            )
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    BalancePush(get_settings()).run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
