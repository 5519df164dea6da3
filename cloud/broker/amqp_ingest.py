"""The ingest on a RabbitMQ cluster: AMQP partitions in, PostgreSQL rows and acks out (D29-C).

Boards publish MQTT 3.1.1 QoS 1 to the cluster's MQTT plugin as they do to Mosquitto; the
topology (cloud/broker/topology.py) hashes every device onto one of ``ingest_partitions``
quorum queues. This process runs ``ingest_writers`` partition consumers; consumer ``i`` reads the
partitions ``p`` with ``p % writers == i``. Each is a :class:`cloud.ingest.shard.Writer` (the
same store, retry and quarantine path as the MQTT ingest) whose thread owns one pika
connection, so every AMQP call happens on the thread that made the connection. Per flush:

1. deliveries arrive (at most ``prefetch`` un-acked) until ``ingest_batch_max`` of them or
   ``ingest_flush_ms`` after the first;
2. they are stored in ONE transaction (:func:`cloud.ingest.writer.write`) and committed;
3. the boards' acks go to ``amq.topic`` as ``{prefix}.v1.dev.{device}.ack`` on a channel in
   confirm mode, back to back, and the broker's confirms of all of them are awaited; then ONE
   ``basic.ack`` with ``multiple`` for the flush's last delivery tag. The channel's deliveries
   are all this thread's and are flushed in order, so ``multiple`` covers exactly what was
   committed.

A lost connection (the consumer's node died, a partition's leader moved) drops the channel: its
un-acked deliveries go back to their queues, the consumer reconnects to the next node of
``amqp_urls``, and what comes again is deduped by the database and acked again. Several ingest
processes may run: single active consumer lets one read a partition, the others stand by.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, cast

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from cloud.broker import topology
from cloud.broker.amqp_conn import connect
from cloud.ingest.decode import decode
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.shard import Msg, Writer
from cloud.settings import Settings
from cloud.signals import run_until_signalled
from cloud.startup import StartupError

if TYPE_CHECKING:
    from cloud.ingest.service import Ingest

log = logging.getLogger("qadam.ingest")

# A delivery's "generation" is consumer index * GEN_SPAN + that consumer's connection count: the
# writer code hands it back with the tag, and a tag is only valid on the channel it came on.
GEN_SPAN = 1_000_000
_LOST = (pika.exceptions.AMQPError, OSError)
_ACK_PROPERTIES = pika.BasicProperties(delivery_mode=2)  # persistent: QoS 1 to the board
CONFIRM_TIMEOUT_S = 30.0


def _kv(**fields: object) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items())


def _log(level: int, event: str, **fields: object) -> None:
    log.log(level, "%s %s", event, _kv(**fields), extra={"event": event, "fields": fields})


class PartitionConsumer(Writer):
    """One thread: an AMQP connection consuming some partitions, and a database connection."""

    def __init__(self, ingest: AmqpIngest, index: int, queues: list[str]) -> None:
        # Writer only reads settings, stopping, metrics, count() and session from its ingest.
        super().__init__(cast("Ingest", ingest), index, 1, _log)
        self.amqp = ingest
        self.queues = queues
        self.connections = 0  # how many AMQP connections this consumer has had
        self.node = index  # the node to try first: consumers start spread over the nodes
        self._channel: BlockingChannel | None = None
        self._amqp_conn: pika.BlockingConnection | None = None
        self._pending: list[Msg] = []
        self.consuming = threading.Event()

    @property
    def gen(self) -> int:
        return self.index * GEN_SPAN + self.connections

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        settings, stopping = self.amqp.settings, self.amqp.stopping
        delay = 0.2
        while not stopping.is_set():
            conn: pika.BlockingConnection | None = None
            try:
                conn, self.node = connect(settings.amqp_urls, self.node)
                self._consume(conn)
                delay = 0.2
                self._loop(conn)
            except Exception as e:  # lost, or a bug: never let the thread die; re-read
                self.consuming.clear()
                if not isinstance(e, (*_LOST, StartupError)):
                    log.exception("amqp consumer failed", extra={"event": "amqp consumer failed"})
                self.amqp.count(amqp_reconnects=1)
                _log(logging.WARNING, "amqp consumer lost", consumer=self.index,
                     error=type(e).__name__, detail=repr(str(e)[:200]),
                     pending=len(self._pending))  # fmt: skip
                self._pending = []  # their channel is gone; the queues redeliver them
                self.node += 1  # the next node first: this one may be down
                if stopping.wait(delay):
                    break
                delay = min(delay * 2, 5.0)
            finally:
                self._channel = self._amqp_conn = None
                if conn is not None and conn.is_open:
                    try:
                        conn.close()
                    except _LOST:
                        pass
        self.consuming.clear()

    def _consume(self, conn: pika.BlockingConnection) -> None:
        ch = conn.channel()
        # Confirm mode, pipelined: BlockingChannel.confirm_delivery() would wait for each ack's
        # confirm before the next publish (one round trip per board ack: ~270 events/s live
        # when the acks went to quorum queues). On the channel's own async half a flush's acks
        # go out back to back and the confirms are awaited once (send_after_commit).
        selected = threading.Event()
        self._unconfirmed: set[int] = set()
        self._published = 0
        self._nacked = False
        ch._impl.confirm_delivery(self._on_confirm, lambda _frame: selected.set())
        while not selected.is_set():
            conn.process_data_events(time_limit=0.05)
        ch.basic_qos(prefetch_count=self.amqp.prefetch)
        self.connections += 1
        self._amqp_conn = conn
        self._channel = ch
        for q in self.queues:
            ch.basic_consume(q, self._on_delivery)
        self.consuming.set()
        _log(logging.INFO, "amqp consuming", consumer=self.index, node=self.node + 1,
             partitions=len(self.queues), generation=self.gen)  # fmt: skip

    def _on_confirm(self, frame: Any) -> None:
        m = frame.method
        if isinstance(m, pika.spec.Basic.Nack):
            self._nacked = True
        if m.multiple:
            self._unconfirmed = {t for t in self._unconfirmed if t > m.delivery_tag}
        else:
            self._unconfirmed.discard(m.delivery_tag)

    def _on_delivery(self, _ch: Any, method: Any, _props: Any, body: bytes) -> None:
        d = decode(topology.mqtt_topic(method.routing_key), body)
        self._pending.append(Msg(d, method.delivery_tag, self.gen, time.monotonic()))

    def _loop(self, conn: pika.BlockingConnection) -> None:
        settings, stopping = self.amqp.settings, self.amqp.stopping
        batch_max, window = settings.ingest_batch_max, settings.ingest_flush_ms / 1000
        while not stopping.is_set():
            if not self._pending:
                conn.process_data_events(time_limit=0.2)
                continue
            left = self._pending[0].at + window - time.monotonic()
            if len(self._pending) < batch_max and left > 0:
                conn.process_data_events(time_limit=left)
                continue
            msgs, self._pending = self._pending[:batch_max], self._pending[batch_max:]
            self.amqp.count(messages=len(msgs))
            self._flush(msgs)  # stores, then send_after_commit below

    def send_after_commit(
        self, publishes: list[tuple[str, bytes]], tags: list[tuple[int, int]]
    ) -> None:
        """(this consumer's thread, after COMMIT) the boards' acks with confirms, then one
        ``basic.ack`` with ``multiple`` for the newest delivery of the current channel."""
        ch, conn = self._channel, self._amqp_conn
        if ch is None or conn is None:
            raise pika.exceptions.ChannelClosed(0, "no channel")
        for topic, payload in publishes:
            ch._impl.basic_publish("amq.topic", topology.amqp_name(topic), payload,
                                   _ACK_PROPERTIES)  # fmt: skip
            self._published += 1
            self._unconfirmed.add(self._published)
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        while self._unconfirmed:
            if time.monotonic() > deadline:
                raise pika.exceptions.AMQPError("the boards' acks were not confirmed in time")
            conn.process_data_events(time_limit=0.05)
        if self._nacked:  # the broker refused an ack: drop the channel, the deliveries return
            raise pika.exceptions.AMQPError("the broker nacked a board's ack")
        live = [tag for gen, tag in tags if gen == self.gen]
        if live:
            ch.basic_ack(max(live), multiple=True)


class _Sessions:
    """What the writer code calls ``session``: routes ``send_after_commit`` to the consumer
    that owns the deliveries (by their generation)."""

    def __init__(self, consumers: list[PartitionConsumer]) -> None:
        self.consumers = consumers

    def send_after_commit(
        self, publishes: list[tuple[str, bytes]], tags: list[tuple[int, int]]
    ) -> None:
        if not tags:
            return
        self.consumers[tags[0][0] // GEN_SPAN].send_after_commit(publishes, tags)


class AmqpIngest:
    """RabbitMQ (AMQP) → PostgreSQL ingest, with the MQTT ingest's start/stop/wait_ready/stats."""

    def __init__(self, settings: Settings) -> None:
        if not settings.amqp_urls:
            raise StartupError("the AMQP ingest needs QADAM_AMQP_URLS")
        self.settings = settings
        self.stopping = threading.Event()
        self.prefetch = max(2 * settings.ingest_batch_max, 100)
        queues = topology.queue_names(settings)
        n = min(settings.ingest_writers, len(queues))
        self.consumers = [PartitionConsumer(self, i, queues[i::n]) for i in range(n)]
        self.writers = self.consumers
        self.session = _Sessions(self.consumers)
        self._stats_lock = threading.Lock()
        self.metrics = IngestMetrics(lambda: sum(len(c._pending) for c in self.consumers))
        self.metrics_port: int | None = None
        self._started = False
        self.stats = {
            "messages": 0, "flushes": 0, "inserted": 0, "duplicates": 0, "quarantined": 0,
            "acks": 0, "db_errors": 0, "amqp_reconnects": 0,
        }  # fmt: skip

    def start(self) -> None:
        if self._started:
            raise RuntimeError("AmqpIngest already started")
        self._started = True
        queues = topology.declare_with(self.settings)  # before any board's publish counts
        if self.settings.ingest_metrics_port:
            self.metrics_port = self.metrics.serve(
                self.settings.ingest_metrics_port, self.settings.ingest_metrics_host
            )
        _log(logging.INFO, "ingest starting", broker="rabbitmq",
             nodes=len(self.settings.amqp_urls), partitions=len(queues),
             consumers=len(self.consumers), metrics_port=self.metrics_port)  # fmt: skip
        for c in self.consumers:
            c.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every consumer consumes (True) or the timeout passed (False)."""
        end = None if timeout is None else time.monotonic() + timeout
        for c in self.consumers:
            left = None if end is None else max(0.0, end - time.monotonic())
            if not c.consuming.wait(left):
                return False
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Stop: finish the current flush; what is not acked goes back to the partitions."""
        if not self._started or self.stopping.is_set():
            return
        self.stopping.set()
        for c in self.consumers:
            c.join(timeout)
        self.metrics.close()
        _log(logging.INFO, "ingest stopped", **self.stats)

    def run_forever(self) -> None:
        run_until_signalled(self.start, self.stop)

    def count(self, **deltas: int) -> None:
        with self._stats_lock:
            for k, v in deltas.items():
                self.stats[k] += v
