"""What the workers that push to boards share: a paho client subscribed to some board topics, a
bounded queue from its network thread to one worker thread with its own database connection,
a periodic poll, and start/stop/ready.

Subclasses say which messages they keep (:meth:`accept`), what to do with each (:meth:`handle`),
and what to do every ``poll_ms`` (:meth:`poll`); :meth:`setup` runs once on the first connection.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.reasoncodes import ReasonCode

from cloud.db.conn import close_quietly, connect
from cloud.ingest.ackkeys import ack_key, boot_floor, floor_command, floor_for
from cloud.mqtt_client import make_client
from cloud.settings import Settings
from cloud.signals import run_until_signalled

_RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)


class BoardWorker:
    name = "board"  # thread name, log words, the database application_name
    leaves: tuple[str, ...] = ("status",)  # subscribed as {prefix}/v1/dev/+/{leaf}

    def __init__(self, settings: Settings, client_id: str, poll_ms: int) -> None:
        self.settings = settings
        self.prefix = settings.topic_prefix
        self._base = f"{self.prefix}/v1/dev/"
        self._poll_s = poll_ms / 1000
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=100_000)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._started = False
        self.stats: dict[str, int] = {"errors": 0, "boot_floors": 0}
        self._lives: dict[str, tuple[int, int]] = {}  # device -> (boot, up s) found in order
        self._reused_seen: int | None = None  # newest identity_reused quarantine row handled
        self.log = logging.getLogger(f"qadam.{self.name}")
        self._client = make_client(settings, client_id, self, clean_session=True)

    # -- what subclasses provide -------------------------------------------------------------
    def accept(self, device: str, leaf: str, msg: mqtt.MQTTMessage) -> Any:
        """(paho thread) -> the item to queue for :meth:`handle`, or None to drop the message."""
        raise NotImplementedError

    def handle(self, conn: psycopg.Connection[Any], item: Any) -> None:
        raise NotImplementedError

    def poll(self, conn: psycopg.Connection[Any]) -> None:
        """Every ``poll_ms``, on the worker thread."""

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        """Once, on the worker thread's first database connection."""

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._started = True
        self.log.info("%s worker starting broker=%s:%s prefix=%s", self.name,
                      self.settings.mqtt_host, self.settings.mqtt_port, self.prefix)  # fmt: skip
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-push", daemon=True)
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
        self.log.info("%s worker stopped %s", self.name, self.stats)

    def run_forever(self) -> None:
        run_until_signalled(self.start, self.stop)

    # -- MQTT (paho network thread) ----------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        if rc.is_failure:
            self.log.error("mqtt connect failed reason=%s", rc)
            return
        client.subscribe([(self._base + "+/" + leaf, 1) for leaf in self.leaves])

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _f: object, rc: ReasonCode, _p: object
    ) -> None:
        self._ready.clear()
        if not self._stopping.is_set():
            self.log.warning("mqtt disconnected reason=%s", rc)

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _m: int, rcs: list[ReasonCode], _p: object
    ) -> None:
        if any(rc.is_failure for rc in rcs):
            self.log.error("mqtt subscribe refused")
            return
        self._ready.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            return
        rest = topic[len(self._base) :] if topic.startswith(self._base) else ""
        device, _, leaf = rest.partition("/")
        if not device or leaf not in self.leaves:
            return
        item = self.accept(device, leaf, msg)
        if item is None:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.log.warning("%s worker queue full; dropped %s (the board repeats it)",
                             self.name, topic)  # fmt: skip

    def check_boot(self, conn: psycopg.Connection[Any], device: str, doc: dict[str, Any]) -> int:
        """(worker thread) An online status says the board's boot: if the cloud already holds
        events of a newer boot, or of the same boot from another life of the board (a re-flash
        restarted its counter), send the boot floor command (protocol.md "Boot floor"; issue
        #13 item 7). Returns the floor sent, 0 if none. A board seen in order is not queried
        again until its boot changes or its uptime goes back (a restart)."""
        boot, up = doc.get("boot"), doc.get("up")
        if not doc.get("online") or isinstance(boot, bool) or not isinstance(boot, int):
            return 0
        if isinstance(up, bool) or not isinstance(up, int):
            up = None
        seen = self._lives.get(device)
        if seen is not None and seen[0] == boot and up is not None and up >= seen[1]:
            return 0
        floor = floor_for(conn, device, boot, up)
        if not floor:
            if up is not None:
                self._lives[device] = (boot, up)
            return 0
        self._lives.pop(device, None)
        self.publish(device, "cmd", floor_command(ack_key(conn, device), device, floor))
        self.stats["boot_floors"] += 1
        self.log.warning("boot floor sent device=%s boot=%s up=%s floor=%d", device, boot, up,
                         floor)  # fmt: skip
        return floor

    def tell_reused_boots(self, conn: psycopg.Connection[Any]) -> int:
        """(worker thread) The ingest quarantined events whose identity the cloud already held
        (reason ``identity_reused``: a re-flashed board whose first status did not give it away,
        e.g. a short earlier life). Send each such board that still reports a boot at or below
        the cloud's newest the boot floor command, so its next taps get new identities (issue
        #13 item 7). The first call looks back an hour, later ones at rows newer than the last
        seen. Returns the commands sent."""
        since = self._reused_seen
        if since is None:  # rows of the last hour first, then whatever comes after the newest
            top = conn.execute("SELECT coalesce(max(id), 0) FROM quarantine").fetchone()
            self._reused_seen = int(top[0]) if top else 0
        rows = conn.execute(
            "SELECT q.device_id, max(q.id) FROM quarantine q WHERE q.reason = 'identity_reused'"
            " AND q.device_id IS NOT NULL AND q.id > %s"
            " AND (%s OR q.received_at > now() - interval '1 hour') GROUP BY q.device_id",
            (since or 0, since is not None),
        ).fetchall()
        sent = 0
        for device, newest in rows:
            self._reused_seen = max(self._reused_seen or 0, int(newest))
            floor = boot_floor(conn, device)
            row = conn.execute(
                "SELECT (status->>'boot')::bigint FROM device_status WHERE device_id = %s",
                (device,),
            ).fetchone()
            if row is not None and row[0] is not None and int(row[0]) > floor:
                continue  # it moved past the floor already
            self._lives.pop(device, None)
            self.publish(device, "cmd", floor_command(ack_key(conn, device), device, floor))
            self.stats["boot_floors"] += 1
            sent += 1
            self.log.warning("boot floor sent device=%s after reused identities floor=%d",
                             device, floor)  # fmt: skip
        return sent

    def publish(self, device: str, leaf: str, payload: bytes) -> None:
        self._client.publish(f"{self._base}{device}/{leaf}", payload, qos=1)

    # -- worker thread -----------------------------------------------------------------------
    def _run(self) -> None:
        next_poll = 0.0
        first = True
        while not self._stopping.is_set():
            try:
                conn = self._connection()
                if first:
                    self.setup(conn)
                    first = False
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + self._poll_s
                    self.poll(conn)
                try:
                    item = self._queue.get(timeout=max(0.0, min(0.2, next_poll - now)))
                except queue.Empty:
                    continue
                self.handle(conn, item)
            except _RETRYABLE as e:
                self.log.warning("%s worker db error=%s; reconnecting", self.name,
                                 type(e).__name__)  # fmt: skip
                self._drop_connection()
                self._stopping.wait(1.0)
            except Exception:
                self.stats["errors"] += 1
                self.log.exception("%s worker error", self.name)
                self._stopping.wait(1.0)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop_connection()
            self._conn = connect(
                self.settings.database_url, autocommit=True, application_name=f"qadam-{self.name}"
            )
        return self._conn

    def _drop_connection(self) -> None:
        close_quietly(self._conn)
        self._conn = None
