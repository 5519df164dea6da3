"""Whitelist distribution: keeps every board on its school's newest whitelist.

- **Status consumer.** Subscribes to ``{prefix}/v1/dev/+/status`` and stores each board's last
  status (wl version, online, last_seen) in ``device_status``; a status with a synced ``clock``
  reference corrects that boot's unsynced events (:mod:`cloud.ingest.clock`, protocol.md "Clock").
- **Compiler.** Every ``whitelist_poll_ms`` it reads ``whitelist_dirty`` (set by triggers on cards
  and people in the transaction that changed them) and compiles those schools; a changed list is
  stored as version N+1 (:func:`cloud.provisioning.whitelists.compile_school`).
- **Pusher.** A new version goes to every online board of the school; a status whose ``wl`` is not
  the newest gets an update; ``wl/req`` gets a snapshot. A delta when the board's version is still
  stored and the delta is smaller, else a snapshot; chunks QoS 1 to ``{prefix}/v1/dev/{dev}/wl``.

Run: ``python -m cloud.workers.whitelist_push`` (settings from ``QADAM_*``), or in-process with
``WhitelistPush(settings).start()`` / ``.stop()``.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.reasoncodes import ReasonCode

from cloud.db.conn import connect
from cloud.ingest.clock import apply_status_clock
from cloud.mqtt_client import make_client
from cloud.provisioning import whitelists as wls
from cloud.settings import Settings, get_settings
from cloud.signals import run_until_signalled

log = logging.getLogger("qadam.whitelist")

RESEND_S = 15.0  # the same update is not re-sent to a board within this time (unless it asks)
_RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)


@dataclass(frozen=True, slots=True)
class _Msg:
    device: str
    leaf: str  # "status" or "wl/req"
    payload: bytes
    retained: bool


class WhitelistPush:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.prefix = settings.topic_prefix
        self._base = f"{self.prefix}/v1/dev/"
        self._queue: queue.Queue[_Msg] = queue.Queue(maxsize=100_000)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._sent: dict[str, tuple[int, int, float]] = {}  # device -> (version, kind, when)
        self._started = False
        self.stats = {"status": 0, "compiled": 0, "pushes": 0, "chunks": 0, "bad_status": 0,
                      "clock_corrected": 0}  # fmt: skip
        cid = settings.whitelist_client_id or f"qadam-wl-{uuid.uuid4().hex[:10]}"
        client = make_client(settings, cid, self, clean_session=True)
        self._client = client

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            raise RuntimeError("WhitelistPush already started")
        self._started = True
        log.info(
            "whitelist worker starting broker=%s:%s prefix=%s",
            self.settings.mqtt_host, self.settings.mqtt_port, self.prefix,
        )  # fmt: skip
        self._thread = threading.Thread(target=self._run, name="whitelist-push", daemon=True)
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
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        log.info("whitelist worker stopped %s", self.stats)

    def run_forever(self) -> None:
        run_until_signalled(self.start, self.stop)

    # -- MQTT (paho network thread) ----------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            log.error("mqtt connect failed reason=%s", rc)
            return
        client.subscribe([(self._base + "+/status", 1), (self._base + "+/wl/req", 1)])

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        self._ready.clear()
        if not self._stopping.is_set():
            log.warning("mqtt disconnected reason=%s", rc)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _m: int, rcs: list[ReasonCode], _p: object
    ) -> None:
        if any(rc.is_failure for rc in rcs):
            log.error("mqtt subscribe refused")
            return
        self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            return
        rest = topic[len(self._base) :] if topic.startswith(self._base) else ""
        device, _, leaf = rest.partition("/")
        if not device or leaf not in ("status", "wl/req"):
            return
        try:
            self._queue.put_nowait(_Msg(device, leaf, bytes(msg.payload), bool(msg.retain)))
        except queue.Full:
            log.warning("whitelist worker queue full; dropped %s (the board repeats it)", topic)

    # -- worker thread -----------------------------------------------------------------------
    def _run(self) -> None:
        poll_s = self.settings.whitelist_poll_ms / 1000
        next_poll = 0.0
        first = True
        while not self._stopping.is_set():
            try:
                conn = self._connection()
                if first:
                    wls.mark_all_dirty(conn)
                    first = False
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + poll_s
                    self._compile_dirty(conn)
                try:
                    msg = self._queue.get(timeout=max(0.0, min(0.2, next_poll - now)))
                except queue.Empty:
                    continue
                self._handle(conn, msg)
            except _RETRYABLE as e:
                log.warning("whitelist worker db error=%s; reconnecting", type(e).__name__)
                self._drop_connection()
                self._stopping.wait(1.0)
            except Exception:
                log.exception("whitelist worker error")
                self._stopping.wait(1.0)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop_connection()
            self._conn = connect(
                self.settings.database_url, autocommit=True, application_name="qadam-whitelist"
            )
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _compile_dirty(self, conn: psycopg.Connection[Any]) -> None:
        for school in wls.dirty_schools(conn):
            new = wls.compile_school(conn, school, self.settings.whitelist_keep)
            if new is None:
                continue
            self.stats["compiled"] += 1
            log.info(
                "whitelist compiled school=%s version=%d count=%d", school, new.version, new.count
            )
            for device in wls.school_devices(conn, school):
                self._push(conn, device, force_snapshot=False, asked=False)

    def _handle(self, conn: psycopg.Connection[Any], msg: _Msg) -> None:
        if msg.leaf == "wl/req":
            self._push(conn, msg.device, force_snapshot=True, asked=True)
            return
        doc = wls.parse_status(msg.payload)
        if doc is None:
            if msg.payload:
                self.stats["bad_status"] += 1
                log.warning("status ignored device=%s: not a v1 status", msg.device)
            return
        if not wls.record_status(conn, msg.device, doc, msg.retained):
            return  # not a registered device (D4)
        self.stats["status"] += 1
        corrected = apply_status_clock(conn, msg.device, doc)  # protocol.md "Clock"
        if corrected:
            self.stats["clock_corrected"] += corrected
            log.info("clock correction device=%s boot=%s events=%d",
                     msg.device, doc.get("boot"), corrected)  # fmt: skip
        if doc["online"] and "wl" in doc:
            self._push(conn, msg.device, force_snapshot=False, asked=False)

    def _push(
        self, conn: psycopg.Connection[Any], device: str, *, force_snapshot: bool, asked: bool
    ) -> None:
        push, why = wls.plan_push(conn, device, force_snapshot=force_snapshot)
        if push is None:
            return
        prev = self._sent.get(device)
        now = time.monotonic()
        if (
            not asked and prev is not None and prev[:2] == (push.version, push.kind)
            and now - prev[2] < RESEND_S
        ):  # fmt: skip
            return
        self._sent[device] = (push.version, push.kind, now)
        topic = f"{self._base}{device}/wl"
        for m in push.messages:
            self._client.publish(topic, m, qos=1)
        self.stats["pushes"] += 1
        self.stats["chunks"] += len(push.messages)
        log.info(
            "whitelist push device=%s version=%d kind=%s base=%d chunks=%d",
            device, push.version, why, push.base, len(push.messages),
        )  # fmt: skip


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    WhitelistPush(get_settings()).run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
