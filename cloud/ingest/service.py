"""The ingest service: MQTT event batches in, PostgreSQL rows and acks out.

Flow (invariant 3, protocol.md):

1. The network thread of our MQTT session (cloud/mqtt/session.py) reads the socket in large
   chunks, parses every QoS 1 PUBLISH on ``{prefix}/v1/dev/+/events`` in a chunk, decodes them
   (cloud/ingest/decode.py) and puts them, one list per chunk, into a bounded inbox. No PUBACK
   yet. A full inbox blocks the network thread, so the socket is not read and the broker stops
   sending (backpressure) instead of us dropping anything.
2. The writer thread takes up to ``ingest_batch_max`` messages or what arrived within
   ``ingest_flush_ms`` and stores them in ONE transaction (:func:`cloud.ingest.writer.write`).
3. After the commit it sends, in one ``sendall``, one application ack per batch (QoS 1), THEN
   the MQTT PUBACKs. A crash before that loses nothing: the broker redelivers (persistent session)
   and the board re-sends; the database dedupes.

Database errors: connection-level errors reconnect and retry the same messages (never dropped);
an error caused by the data itself isolates the offending batch and quarantines it.

Scale-out: with ``ingest_shared_group`` set, several workers (each with its own stable
``ingest_client_id`` and persistent session) subscribe to
``$share/{group}/{prefix}/v1/dev/+/events`` and the broker spreads the messages over them; the
database dedupes whatever two workers both see.
Operations: Prometheus metrics on ``ingest_metrics_port`` (0 = off), structured log fields, and
monthly event partitions kept ahead (``ensure_event_partitions``) by the writer thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from cloud.db.conn import connect
from cloud.ingest.decode import Batch, Decoded, Reject, decode
from cloud.ingest.inbox import Inbox
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.writer import WriteResult, write
from cloud.mqtt.packets import Publish
from cloud.mqtt.session import Session
from cloud.settings import Settings
from cloud.signals import run_until_signalled

log = logging.getLogger("qadam.ingest")

STORE_ERROR = "store_error"
_RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)
# Partitions for the months around now are (re)ensured at connect and then this often.
MAINTAIN_EVERY_S = 6 * 3600
_ENSURE_PARTITIONS = (
    "SELECT ensure_event_partitions(now() - interval '1 month', now() + interval '3 months')"
)
KEEPALIVE_S = 30


@dataclass(frozen=True, slots=True)
class _Msg:
    decoded: Decoded  # holds the topic and the payload too
    pid: int  # MQTT packet id; 0 for QoS 0 (nothing to PUBACK)
    gen: int  # which MQTT connection delivered it; a PUBACK is only valid on that connection
    at: float  # time.monotonic() when it arrived


def _kv(**fields: object) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())


def _log(level: int, event: str, **fields: object) -> None:
    """A log line with structured fields: ``event k=v ...`` as text, an object as JSON."""
    log.log(level, "%s %s", event, _kv(**fields), extra={"event": event, "fields": fields})


class Ingest:
    """MQTT → PostgreSQL ingest. ``start()`` returns at once; work happens on threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        events = f"{settings.topic_prefix}/v1/dev/+/events"
        group = settings.ingest_shared_group
        self.subscription = f"$share/{group}/{events}" if group else events
        self._inbox: Inbox[_Msg] = Inbox(settings.ingest_queue_max)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._writer: threading.Thread | None = None
        self._started = False
        self._maintained_at: float | None = None
        self.metrics = IngestMetrics(self._inbox.qsize)
        self.metrics_port: int | None = None
        self.stats = {
            "messages": 0,
            "flushes": 0,
            "inserted": 0,
            "duplicates": 0,
            "quarantined": 0,
            "acks": 0,
            "db_errors": 0,
        }
        self._session = Session(
            settings.mqtt_host,
            settings.mqtt_port,
            settings.ingest_client_id,
            subscriptions=[(self.subscription, 1)],
            on_messages=self._on_messages,
            clean_session=False,
            username=settings.mqtt_user,
            password=settings.mqtt_password if settings.mqtt_user is not None else None,
            keepalive=KEEPALIVE_S,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_subscribe=self._on_subscribe,
            on_connect_failed=self._on_connect_failed,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("Ingest already started")
        self._started = True
        if self.settings.ingest_metrics_port:
            self.metrics_port = self.metrics.serve(
                self.settings.ingest_metrics_port, self.settings.ingest_metrics_host
            )
        _log(
            logging.INFO,
            "ingest starting",
            broker=f"{self.settings.mqtt_host}:{self.settings.mqtt_port}",
            client_id=self.settings.ingest_client_id,
            subscription=self.subscription,
            metrics_port=self.metrics_port,
        )
        self._writer = threading.Thread(target=self._run_writer, name="ingest-writer", daemon=True)
        self._writer.start()
        self._session.start()

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
        self._session.stop(timeout)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._ready.clear()
        self.metrics.close()
        _log(logging.INFO, "ingest stopped", **self.stats)

    def run_forever(self) -> None:
        """Run until SIGINT or SIGTERM (must be called from the main thread)."""
        run_until_signalled(self.start, self.stop)

    # -- MQTT callbacks (session network thread) -------------------------------------------

    def _on_connect(self, generation: int, session_present: bool) -> None:
        _log(
            logging.INFO, "mqtt connected", session_present=session_present, generation=generation,
        )  # fmt: skip

    def _on_connect_failed(self, reason: str) -> None:
        _log(logging.ERROR, "mqtt connect failed", reason=reason)

    def _on_disconnect(self, reason: str) -> None:
        self._ready.clear()
        level = logging.INFO if self._stopping.is_set() else logging.WARNING
        _log(level, "mqtt disconnected", reason=reason)

    def _on_subscribe(self, ok: bool, _codes: tuple[int, ...]) -> None:
        if not ok:
            _log(logging.ERROR, "mqtt subscribe refused", topic=self.subscription)
            return
        _log(logging.INFO, "mqtt subscribed", topic=self.subscription)
        self._ready.set()

    def _on_messages(self, gen: int, msgs: list[Publish], at: float) -> None:
        # Decoding here, not in the writer, overlaps it with the writer's database round trips.
        items = [_Msg(decode(m.topic, m.payload), m.pid, gen, at) for m in msgs]
        self.stats["messages"] += len(items)
        # Blocks while the inbox is full (backpressure); gives up only when stopping, leaving
        # the rest un-acked so the broker redelivers them.
        self._inbox.put_many(items, self._stopping, idle=self._session.tick)

    # -- writer thread ---------------------------------------------------------------------

    def _run_writer(self) -> None:
        batch_max = self.settings.ingest_batch_max
        flush_s = self.settings.ingest_flush_ms / 1000
        while not self._stopping.is_set():
            msgs = self._inbox.take(batch_max, 0.2, flush_s)
            if not msgs:
                continue
            try:
                self._flush(msgs)
            except Exception:  # never let the writer thread die; the messages stay un-acked
                log.exception(
                    "ingest flush failed messages=%d", len(msgs),
                    extra={"event": "ingest flush failed", "fields": {"messages": len(msgs)}},
                )  # fmt: skip
                self._stopping.wait(1.0)

    def _flush(self, msgs: list[_Msg]) -> None:
        t0 = time.monotonic()
        decoded = [m.decoded for m in msgs]
        for d in decoded:
            if isinstance(d, Reject):
                _log(
                    logging.WARNING, "ingest reject", reason=d.reason, device=d.device,
                    boot=d.boot, first=d.first, last=d.last, detail=repr(d.detail),
                )  # fmt: skip
        result = self._store(decoded)
        if result is None:  # stopping while the database is unreachable
            return
        committed = time.monotonic()
        met = self.metrics
        met.commit_seconds.observe(committed - t0)
        met.batch_size.observe(result.inserted + result.duplicates)
        met.events.inc(result.inserted)
        met.duplicates.inc(result.duplicates)
        for reason, n in result.rejects.items():
            met.rejects.labels(reason=reason).inc(n)
        met.acks.inc(len(result.acks))
        met.lag.set(committed - min(msg.at for msg in msgs))
        prefix = self.settings.topic_prefix
        # One sendall: the app acks first, then the PUBACKs of messages delivered on the
        # current connection (the broker redelivers the others and we dedupe).
        self._session.send_after_commit(
            [(a.topic(prefix), a.payload()) for a in result.acks],
            [(m.gen, m.pid) for m in msgs],
        )
        self.stats["flushes"] += 1
        self.stats["inserted"] += result.inserted
        self.stats["duplicates"] += result.duplicates
        self.stats["quarantined"] += result.quarantined
        self.stats["acks"] += len(result.acks)
        _log(
            logging.INFO, "ingest flush", messages=len(msgs), inserted=result.inserted,
            duplicates=result.duplicates, quarantined=result.quarantined, acks=len(result.acks),
            ms=round((time.monotonic() - t0) * 1000, 1), queued=self._inbox.qsize(),
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
                self.metrics.db_errors.inc()
                _log(
                    logging.WARNING, "ingest db error, retrying", error=type(e).__name__,
                    detail=repr(str(e).strip()[:200]), delay=delay,
                )  # fmt: skip
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
            self.metrics.db_errors.inc()
            if len(decoded) > 1:
                total = WriteResult()
                for item in decoded:
                    r = self._write_isolating(conn, [item])
                    total.acks += r.acks
                    total.inserted += r.inserted
                    total.duplicates += r.duplicates
                    total.quarantined += r.quarantined
                    total.rejects.update(r.rejects)
                return total
            item = decoded[0]
            _log(logging.ERROR, "ingest store error, quarantining", error=repr(str(e)[:200]))
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
            self._maintain(self._conn, force=True)
        elif time.monotonic() - (self._maintained_at or 0) > MAINTAIN_EVERY_S:
            self._maintain(self._conn, force=False)
        return self._conn

    def _maintain(self, conn: psycopg.Connection[Any], force: bool) -> None:
        """Keep event partitions ahead of time. A failure is logged, never fatal: rows for a
        missing month go to the DEFAULT partition and are moved when the month is created."""
        if not force and self._maintained_at is not None:
            if time.monotonic() - self._maintained_at < MAINTAIN_EVERY_S:
                return
        self._maintained_at = time.monotonic()
        try:
            row = conn.execute(_ENSURE_PARTITIONS).fetchone()
            if row and row[0]:
                _log(logging.INFO, "event partitions created", count=row[0])
        except _RETRYABLE:
            raise
        except psycopg.Error as e:
            _log(logging.WARNING, "event partition upkeep failed", error=repr(str(e)[:200]))

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None
