"""The ingest's routing on a RabbitMQ cluster, declared before any board publishes (D29-C).

RabbitMQ's MQTT plugin publishes a board's ``{prefix}/v1/dev/{device}/events`` to the
``amq.topic`` exchange with the routing key ``{prefix}.v1.dev.{device}.events`` (it swaps ``/`` and
``.``), and PUBACKs it once every queue it was routed to confirmed it, or at once when it matched
no queue: a publish that arrives before this topology exists is acknowledged and dropped. So the
ingest declares it at start (idempotent), and ``python -m cloud.broker.topology`` does it for a
deployment before the boards are pointed at the cluster.

- ``{prefix}.ingest``: an ``x-consistent-hash`` exchange bound to ``amq.topic`` on the event
  routing keys; it hashes the routing key, so one device always lands in the same queue, which
  keeps its order (D18) across ingest hosts.
- ``{prefix}.ingest.pNN``: ``ingest_partitions`` quorum queues (replicated; a publish is confirmed,
  so PUBACKed, after a quorum stored it), single active consumer (one ingest reads a partition
  at a time, the others stand by), at most ``ingest_partition_max`` messages with
  ``x-overflow = reject-publish``: a full partition refuses new publishes instead of dropping
  the oldest (what the MQTT plugin then does to the board: D29-C, tests/cluster).

Changing ``ingest_partitions`` or ``ingest_partition_max`` later needs new queues: RabbitMQ
refuses to redeclare a queue with other arguments (PRECONDITION_FAILED), which this reports.
"""

from __future__ import annotations

import sys
from typing import Any

from cloud.settings import Settings

EXCHANGE_TYPE = "x-consistent-hash"


def amqp_name(mqtt_topic: str) -> str:
    """An MQTT topic as the MQTT plugin's AMQP routing key (``/`` and ``.`` swapped)."""
    return mqtt_topic.translate(_SWAP)


def mqtt_topic(routing_key: str) -> str:
    """The inverse of :func:`amqp_name`."""
    return routing_key.translate(_SWAP)


_SWAP = str.maketrans({"/": ".", ".": "/"})


def exchange_name(settings: Settings) -> str:
    return f"{amqp_name(settings.topic_prefix)}.ingest"


def queue_names(settings: Settings) -> list[str]:
    base = exchange_name(settings)
    return [f"{base}.p{i:02d}" for i in range(settings.ingest_partitions)]


def events_key(settings: Settings) -> str:
    """The binding key on ``amq.topic`` that matches every board's events."""
    return amqp_name(f"{settings.topic_prefix}/v1/dev/") + "*.events"


def queue_arguments(settings: Settings) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-single-active-consumer": True,
        "x-max-length": settings.ingest_partition_max,
        "x-overflow": "reject-publish",
    }


def declare(channel: Any, settings: Settings) -> list[str]:
    """Declare the exchange, the queues and the bindings on a pika channel; return the queues."""
    ex = exchange_name(settings)
    channel.exchange_declare(ex, exchange_type=EXCHANGE_TYPE, durable=True)
    channel.exchange_bind(destination=ex, source="amq.topic", routing_key=events_key(settings))
    queues = queue_names(settings)
    args = queue_arguments(settings)
    for q in queues:
        channel.queue_declare(q, durable=True, arguments=args)
        channel.queue_bind(q, ex, routing_key="1")  # the weight of the queue on the hash ring
    return queues


def declare_with(settings: Settings) -> list[str]:
    """Connect to the first reachable node of ``amqp_urls`` and declare."""
    from cloud.broker.amqp_conn import connect

    conn, _ = connect(settings.amqp_urls)
    try:
        return declare(conn.channel(), settings)
    finally:
        if conn.is_open:
            conn.close()


def main() -> int:
    from cloud.startup import load_settings, run_entry

    def body() -> int:
        queues = declare_with(load_settings())
        print(f"declared {len(queues)} partitions: {queues[0]} .. {queues[-1]}")
        return 0

    return run_entry(body)


if __name__ == "__main__":
    sys.exit(main())
