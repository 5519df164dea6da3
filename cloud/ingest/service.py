"""The ingest service: MQTT event batches in, PostgreSQL rows and acks out.

Flow (invariant 3, protocol.md):

1. paho's network thread receives a QoS 1 PUBLISH on ``{prefix}/v1/dev/+/events`` and puts it in
   a bounded queue. ``manual_ack=True``: no PUBACK yet. A full queue blocks the network thread,
   so the broker stops sending (backpressure) instead of us dropping anything.
2. The writer thread drains up to ``ingest_batch_max`` messages or ``ingest_flush_ms``, decodes
   them and stores them in ONE transaction (:func:`cloud.ingest.writer.write`).
3. After the commit it publishes one application ack per batch (QoS 1), THEN sends the MQTT PUBACKs.
   A crash before step 3 loses nothing: the broker redelivers (persistent session) and the board
   re-sends; the database dedupes.

Database errors: connection-level errors reconnect and retry the same messages (never dropped);
an error caused by the data itself isolates the offending batch and quarantines it.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cloud.db.conn import connect
from cloud.ingest.decode import Batch, Decoded, Reject, decode
from cloud.ingest.writer import WriteResult, write
from cloud.settings import Settings

log = logging.getLogger("qadam.ingest")

STORE_ERROR = "store_error"
_RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)


@dataclass(frozen=True, slots=True)
class _Msg:
    topic: str
    payload: bytes
    mid: int
    qos: int
    gen: int  # which MQTT connection delivered it; a PUBACK is only valid on that connection


def _kv(**fields: object) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())


class Ingest:
    """MQTT → PostgreSQL ingest. ``start()`` returns at once; work happens on threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.subscription = f"{settings.topic_prefix}/v1/dev/+/events"
        self._queue: queue.Queue[_Msg] = queue.Queue(maxsize=settings.ingest_queue_max)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._gen = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._writer: threading.Thread | None = None
        self._started = False
        self.stats = {
            "messages": 0,
            "flushes": 0,
            "inserted": 0,
            "duplicates": 0,
            "quarantined": 0,
            "acks": 0,
            "db_errors": 0,
        }

        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=settings.ingest_client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if settings.mqtt_user is not None:
            client.username_pw_set(settings.mqtt_user, settings.mqtt_password)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("Ingest already started")
        self._started = True
        log.info(
            "ingest starting %s",
            _kv(
                broker=f"{self.settings.mqtt_host}:{self.settings.mqtt_port}",
                client_id=self.settings.ingest_client_id,
                subscription=self.subscription,
            ),
        )
        self._writer = threading.Thread(target=self._run_writer, name="ingest-writer", daemon=True)
        self._writer.start()
        self._client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self._client.loop_start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until connected and subscribed (True) or the timeout passed (False)."""
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop: finish (or abandon, if the database is down) the current flush, disconnect.
        Messages not yet acked stay with the broker and are redelivered on the next start."""
        if not self._started or self._stopping.is_set():
            return
        self._stopping.set()
        if self._writer is not None:
            self._writer.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._ready.clear()
        log.info("ingest stopped %s", _kv(**self.stats))

    def run_forever(self) -> None:
        """Run until SIGINT or SIGTERM (must be called from the main thread)."""
        done = threading.Event()

        def _handler(signum: int, _frame: object) -> None:
            log.info("ingest signal %s", _kv(signal=signal.Signals(signum).name))
            done.set()

        old = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            while not done.wait(1.0):
                pass
        finally:
            self.stop()
            for s, h in old.items():
                signal.signal(s, h)

    # -- MQTT callbacks (paho network thread) ----------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: object,
    ) -> None:
        if reason_code.is_failure:
            log.error("mqtt connect failed %s", _kv(reason=reason_code))
            return
        self._gen += 1
        log.info(
            "mqtt connected %s", _kv(session_present=flags.session_present, generation=self._gen)
        )
        client.subscribe(self.subscription, qos=1)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: object,
    ) -> None:
        self._ready.clear()
        level = logging.INFO if self._stopping.is_set() else logging.WARNING
        log.log(level, "mqtt disconnected %s", _kv(reason=reason_code))

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _mid: int,
        reason_codes: list[ReasonCode],
        _properties: object,
    ) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("mqtt subscribe refused %s", _kv(topic=self.subscription))
            return
        log.info("mqtt subscribed %s", _kv(topic=self.subscription))
        self._ready.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        item = _Msg(topic, bytes(msg.payload), msg.mid, msg.qos, self._gen)
        self.stats["messages"] += 1
        # Block while the queue is full (backpressure); give up only when stopping, leaving the
        # message un-acked so the broker redelivers it.
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    # -- writer thread ---------------------------------------------------------------------

    def _run_writer(self) -> None:
        batch_max = self.settings.ingest_batch_max
        flush_s = self.settings.ingest_flush_ms / 1000
        while not self._stopping.is_set():
            try:
                msgs = [self._queue.get(timeout=0.2)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + flush_s
            while len(msgs) < batch_max:
                remaining = deadline - time.monotonic()
                try:
                    if remaining > 0:
                        msgs.append(self._queue.get(timeout=remaining))
                    else:
                        msgs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._flush(msgs)
            except Exception:  # never let the writer thread die; the messages stay un-acked
                log.exception("ingest flush failed %s", _kv(messages=len(msgs)))
                self._stopping.wait(1.0)

    def _flush(self, msgs: list[_Msg]) -> None:
        t0 = time.monotonic()
        decoded = [decode(m.topic, m.payload) for m in msgs]
        for d in decoded:
            if isinstance(d, Reject):
                log.warning(
                    "ingest reject %s",
                    _kv(reason=d.reason, device=d.device, boot=d.boot, first=d.first,
                        last=d.last, detail=repr(d.detail)),
                )  # fmt: skip
        result = self._store(decoded)
        if result is None:  # stopping while the database is unreachable
            return
        for ack in result.acks:
            self._client.publish(ack.topic(self.settings.topic_prefix), ack.payload(), qos=1)
        gen = self._gen
        for m in msgs:
            if m.gen == gen:
                self._client.ack(m.mid, m.qos)
            # else: delivered on an earlier connection; the broker redelivers it and we dedupe
        self.stats["flushes"] += 1
        self.stats["inserted"] += result.inserted
        self.stats["duplicates"] += result.duplicates
        self.stats["quarantined"] += result.quarantined
        self.stats["acks"] += len(result.acks)
        log.info(
            "ingest flush %s",
            _kv(messages=len(msgs), inserted=result.inserted, duplicates=result.duplicates,
                quarantined=result.quarantined, acks=len(result.acks),
                ms=f"{(time.monotonic() - t0) * 1000:.1f}", queued=self._queue.qsize()),
        )  # fmt: skip

    def _store(self, decoded: list[Decoded]) -> WriteResult | None:
        """Write ``decoded``, reconnecting and retrying until it is committed or we stop."""
        delay = 0.1
        while True:
            try:
                conn = self._connection()
                return self._write_isolating(conn, decoded)
            except _RETRYABLE as e:
                self.stats["db_errors"] += 1
                log.warning(
                    "ingest db error, retrying %s",
                    _kv(error=type(e).__name__, detail=repr(str(e).strip()[:200]), delay=delay),
                )
                self._drop_connection()
                if self._stopping.wait(delay):
                    return None
                delay = min(delay * 2, 5.0)

    def _write_isolating(
        self, conn: psycopg.Connection[Any], decoded: list[Decoded]
    ) -> WriteResult:
        """Write all in one transaction; if the data itself makes that fail, write item by item
        and quarantine the item that fails (so one bad batch cannot stall the ingest)."""
        try:
            return write(conn, decoded)
        except _RETRYABLE:
            raise
        except psycopg.Error as e:
            self.stats["db_errors"] += 1
            if len(decoded) > 1:
                total = WriteResult()
                for item in decoded:
                    r = self._write_isolating(conn, [item])
                    total.acks += r.acks
                    total.inserted += r.inserted
                    total.duplicates += r.duplicates
                    total.quarantined += r.quarantined
                return total
            item = decoded[0]
            log.error("ingest store error, quarantining %s", _kv(error=repr(str(e)[:200])))
            detail = str(e) if isinstance(item, Batch) else f"{item.reason}: {e}"
            rej = Reject(
                STORE_ERROR,
                item.device,
                item.boot,
                item.first,
                item.last,
                detail=detail[:500],
                topic=item.topic,
                payload=item.payload,
            )
            return write(conn, [rej])

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop_connection()
            self._conn = connect(
                self.settings.database_url, autocommit=True, application_name="qadam-ingest"
            )
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None
