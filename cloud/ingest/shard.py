"""One writer of the ingest: a bounded inbox, a thread, and its own database connection.

The ingest runs ``ingest_writers`` of these (D18). The network thread hands each message to the
writer that owns its device (a stable hash of the device id), so one board's batches are always
stored, committed and acked in order by one writer, while several writers keep several
PostgreSQL backends busy during a replay. Each writer stores a flush in one transaction
(:func:`cloud.ingest.writer.write`) and only then sends its acks and PUBACKs (invariant 3).

Database errors: connection-level errors reconnect and retry the same messages (never dropped);
an error caused by the data itself isolates the offending batch and quarantines it.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg

from cloud.db.conn import close_quietly, connect
from cloud.ingest.ackkeys import AckKeys, signed_payload
from cloud.ingest.decode import Batch, Decoded, Reject
from cloud.ingest.inbox import Inbox
from cloud.ingest.stall import StallWatch
from cloud.ingest.writer import Ack, WriteResult, write

if TYPE_CHECKING:
    from cloud.ingest.service import Ingest

STORE_ERROR = "store_error"
# Connection-level errors: reconnect and retry. A read-only transaction is one too: the server
# became a standby (a failover, D29-D) and the next connect finds the new primary; the data is
# not at fault, so it must never be quarantined.
_RETRYABLE = (
    psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.ReadOnlySqlTransaction
)  # fmt: skip
# Partitions for the months around now are (re)ensured at connect and then this often.
MAINTAIN_EVERY_S = 6 * 3600
_ENSURE_PARTITIONS = (
    "SELECT ensure_event_partitions(now() - interval '1 month', now() + interval '3 months')"
)


@dataclass(frozen=True, slots=True)
class Msg:
    decoded: Decoded  # holds the topic and the payload too
    pid: int  # MQTT packet id; 0 for QoS 0 (nothing to PUBACK)
    gen: int  # which MQTT connection delivered it; a PUBACK is only valid on that connection
    at: float  # time.monotonic() when it arrived


def _arrived(msg: Msg) -> float:
    return msg.at


def shard_of(device: str | None, shards: int) -> int:
    """The writer that owns ``device`` (stable across runs; rejects without a device: 0)."""
    if shards == 1 or device is None:
        return 0
    return zlib.crc32(device.encode("utf-8", "surrogatepass")) % shards


LogFn = Callable[..., None]


class Writer:
    def __init__(self, ingest: Ingest, index: int, queue_max: int, log: LogFn) -> None:
        self.ingest = ingest
        self.index = index
        self.inbox: Inbox[Msg] = Inbox(queue_max)
        self._log = log
        self._conn: psycopg.Connection[Any] | None = None
        self._thread: threading.Thread | None = None
        self._maintained_at: float | None = None
        self.ack_keys = AckKeys()  # the ack keys of this writer's devices (protocol.md "Ack")
        # cuts a connection to a database that stopped answering (cloud/ingest/stall.py)
        self._stall = StallWatch(
            ingest.settings.ingest_db_stall_s, ingest.stopping, self._stalled
        )  # fmt: skip

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"ingest-writer-{self.index}", daemon=True
        )
        self._thread.start()
        if self._stall.enabled:
            threading.Thread(
                target=self._stall.run, name=f"ingest-stall-{self.index}", daemon=True
            ).start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
        self._drop_connection()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        settings, stopping = self.ingest.settings, self.ingest.stopping
        flush_s = settings.ingest_flush_ms / 1000
        # Connect now, not at the first flush, which would otherwise pay the connection and the
        # partition upkeep while its boards wait for their acks. If the database is unreachable
        # the first flush retries, as after any connection loss.
        try:
            self._connection()
        except _RETRYABLE as e:
            self._drop_connection()
            self._log(logging.WARNING, "ingest db unreachable at start", error=type(e).__name__,
                      detail=repr(str(e).strip()[:200]))  # fmt: skip
        while not stopping.is_set():
            msgs = self.inbox.take(settings.ingest_batch_max, 0.2, flush_s, _arrived)
            if not msgs:
                continue
            try:
                self._flush(msgs)
            except Exception:  # never let the writer thread die; the messages stay un-acked
                logging.getLogger("qadam.ingest").exception(
                    "ingest flush failed messages=%d", len(msgs),
                    extra={"event": "ingest flush failed", "fields": {"messages": len(msgs)}},
                )  # fmt: skip
                stopping.wait(1.0)

    def _flush(self, msgs: list[Msg]) -> None:
        t0 = time.monotonic()
        decoded = [m.decoded for m in msgs]
        for d in decoded:
            if isinstance(d, Reject):
                self._log(
                    logging.WARNING, "ingest reject", reason=d.reason, device=d.device,
                    boot=d.boot, first=d.first, last=d.last, detail=repr(d.detail),
                )  # fmt: skip
        result = self._store(decoded)
        if result is None:  # stopping while the database is unreachable
            return
        committed = time.monotonic()
        ing = self.ingest
        met = ing.metrics
        met.commit_seconds.observe(committed - t0)
        met.batch_size.observe(result.inserted + result.duplicates)
        met.events.inc(result.inserted)
        met.duplicates.inc(result.duplicates)
        for reason, n in result.rejects.items():
            met.rejects.labels(reason=reason).inc(n)
        if result.reused:  # issue #13 item 7: never a silent drop
            met.identity_reused.inc(result.reused)
            self._log(
                logging.ERROR, "ingest identity reused", writer=self.index,
                events=result.reused, quarantined=result.rejects.get("identity_reused", 0),
            )  # fmt: skip
        met.acks.inc(len(result.acks))
        met.lag.set(committed - min(msg.at for msg in msgs))
        prefix = ing.settings.topic_prefix
        with self._stall.step():
            keys = self._keys(result.acks)
        # One sendall: the app acks first (with their mac, for boards with an ack key), then the
        # PUBACKs of messages delivered on the current connection (the broker redelivers the
        # others and we dedupe).
        ing.session.send_after_commit(
            [
                (
                    a.topic(prefix),
                    signed_payload(a.payload(), keys[a.device], a.device, a.boot, a.first, a.last),
                )
                for a in result.acks
            ],
            [(m.gen, m.pid) for m in msgs],
        )
        ing.count(
            flushes=1, inserted=result.inserted, duplicates=result.duplicates,
            quarantined=result.quarantined, acks=len(result.acks),
        )  # fmt: skip
        self._log(
            logging.INFO, "ingest flush", writer=self.index, messages=len(msgs),
            inserted=result.inserted, duplicates=result.duplicates,
            quarantined=result.quarantined, acks=len(result.acks), bulk=result.bulk,
            ms=round((time.monotonic() - t0) * 1000, 1), queued=self.inbox.qsize(),
        )  # fmt: skip

    def _keys(self, acks: list[Ack]) -> dict[str, bytes | None]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return {a.device: None for a in acks}
        return self.ack_keys.get(conn, {a.device for a in acks})

    def _store(self, decoded: list[Decoded]) -> WriteResult | None:
        """Write ``decoded``, reconnecting and retrying until it is committed or we stop."""
        delay = 0.1
        while True:
            try:
                with self._stall.step():
                    conn = self._connection()
                    return self._write_isolating(conn, decoded)
            except _RETRYABLE as e:
                self.ingest.count(db_errors=1)
                self.ingest.metrics.db_errors.inc()
                self._log(
                    logging.WARNING, "ingest db error, retrying", error=type(e).__name__,
                    detail=repr(str(e).strip()[:200]), delay=delay,
                )  # fmt: skip
                self._drop_connection()
                if self.ingest.stopping.wait(delay):
                    return None
                delay = min(delay * 2, 5.0)

    def _write_isolating(
        self, conn: psycopg.Connection[Any], decoded: list[Decoded]
    ) -> WriteResult:
        """Write all in one transaction; if the data itself makes that fail, write item by item
        and quarantine the item that fails (so one bad batch cannot stall the ingest)."""
        try:
            return write(conn, decoded, self.ingest.settings.ingest_bulk_min)
        except _RETRYABLE:
            raise
        except psycopg.Error as e:
            self.ingest.count(db_errors=1)
            self.ingest.metrics.db_errors.inc()
            if len(decoded) > 1:
                total = WriteResult()
                for item in decoded:
                    r = self._write_isolating(conn, [item])
                    total.acks += r.acks
                    total.inserted += r.inserted
                    total.duplicates += r.duplicates
                    total.reused += r.reused
                    total.quarantined += r.quarantined
                    total.rejects.update(r.rejects)
                return total
            item = decoded[0]
            self._log(logging.ERROR, "ingest store error, quarantining", error=repr(str(e)[:200]))
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
                self.ingest.settings.database_url, autocommit=True,
                application_name="qadam-ingest",
            )  # fmt: skip
            self._stall.attach(self._conn)
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
                self._log(logging.INFO, "event partitions created", count=row[0])
        except _RETRYABLE:
            raise
        except psycopg.Error as e:
            self._log(logging.WARNING, "event partition upkeep failed", error=repr(str(e)[:200]))

    def _drop_connection(self) -> None:
        self._stall.detach()  # first: the watchdog must not cut a closed descriptor
        close_quietly(self._conn)
        self._conn = None

    def _stalled(self, waited: float) -> None:
        self._log(
            logging.WARNING, "ingest db stalled, connection cut", writer=self.index,
            waited_s=round(waited, 1),
        )  # fmt: skip
