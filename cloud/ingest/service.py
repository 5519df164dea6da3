"""The ingest service: MQTT event batches in, PostgreSQL rows and acks out.

Flow (invariant 3, protocol.md):

1. The network thread of our MQTT session (cloud/mqtt/session.py) reads the socket in large
   chunks, parses every QoS 1 PUBLISH on ``{prefix}/v1/dev/+/events`` in a chunk, decodes them
   (cloud/ingest/decode.py) and puts them, one list per chunk, into a bounded inbox. No PUBACK
   yet. A full inbox blocks the network thread, so the socket is not read and the broker stops
   sending (backpressure) instead of us dropping anything.
   There is one inbox per writer; a board's messages always go to the same writer
   (cloud/ingest/shard.py), so its acks keep their order.
2. Each of the ``ingest_writers`` writer threads takes up to ``ingest_batch_max`` messages or what
   arrived within ``ingest_flush_ms`` and stores them in ONE transaction on its own database
   connection (:func:`cloud.ingest.writer.write`).
3. After the commit it sends, in one ``sendall``, one application ack per batch (QoS 1), THEN
   the MQTT PUBACKs. A crash before that loses nothing: the broker redelivers (persistent session)
   and the board re-sends; the database dedupes.

Scale-out: with ``ingest_shared_group`` set, several workers (each with its own stable
``ingest_client_id`` and persistent session) subscribe to
``$share/{group}/{prefix}/v1/dev/+/events`` and the broker spreads the messages over them; the
database dedupes whatever two workers both see.
Operations: Prometheus metrics on ``ingest_metrics_port`` (0 = off), structured log fields, and
monthly event partitions kept ahead (``ensure_event_partitions``) by the writer threads.
"""

from __future__ import annotations

import logging
import threading

from cloud.ingest.decode import decode
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.shard import Msg, Writer, shard_of
from cloud.mqtt.packets import Publish
from cloud.mqtt.session import Session
from cloud.settings import Settings
from cloud.signals import run_until_signalled

log = logging.getLogger("qadam.ingest")

KEEPALIVE_S = 30


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
        self.stopping = threading.Event()
        self._ready = threading.Event()
        n = settings.ingest_writers
        per_writer = -(-settings.ingest_queue_max // n)  # the same bound on memory in all
        self.writers = [Writer(self, i, per_writer, _log) for i in range(n)]
        self._started = False
        self._stats_lock = threading.Lock()
        self.metrics = IngestMetrics(lambda: sum(w.inbox.qsize() for w in self.writers))
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
        self.session = Session(
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
            writers=len(self.writers),
        )
        for w in self.writers:
            w.start()
        self.session.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until connected and subscribed (True) or the timeout passed (False)."""
        return self._ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop: finish (or abandon, if the database is down) the current flush, disconnect.
        Messages not yet acked stay with the broker and are redelivered on the next start."""
        if not self._started or self.stopping.is_set():
            return
        self.stopping.set()
        for w in self.writers:
            w.join(timeout)
        self.session.stop(timeout)
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
        level = logging.INFO if self.stopping.is_set() else logging.WARNING
        _log(level, "mqtt disconnected", reason=reason)

    def _on_subscribe(self, ok: bool, _codes: tuple[int, ...]) -> None:
        if not ok:
            _log(logging.ERROR, "mqtt subscribe refused", topic=self.subscription)
            return
        _log(logging.INFO, "mqtt subscribed", topic=self.subscription)
        self._ready.set()

    def _on_messages(self, gen: int, msgs: list[Publish], at: float) -> None:
        # Decoding here, not in the writer, overlaps it with the writer's database round trips.
        n = len(self.writers)
        parts: list[list[Msg]] = [[] for _ in range(n)]
        for m in msgs:
            d = decode(m.topic, m.payload)
            parts[shard_of(d.device, n)].append(Msg(d, m.pid, gen, at))
        self.count(messages=len(msgs))
        # Blocks while an inbox is full (backpressure); gives up only when stopping, leaving
        # the rest un-acked so the broker redelivers them.
        for w, items in zip(self.writers, parts, strict=True):
            if items:
                w.inbox.put_many(items, self.stopping, idle=self.session.tick)

    def count(self, **deltas: int) -> None:
        """Add to ``stats`` (from any thread)."""
        with self._stats_lock:
            for k, v in deltas.items():
                self.stats[k] += v
