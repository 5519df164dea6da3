"""The ingest on a 3-node RabbitMQ cluster (D29-C): boards speak MQTT QoS 1 to the MQTT plugin,
the topology hashes each device onto one quorum partition, the AMQP ingest stores, acks the
boards over amq.topic with confirms, then acks the deliveries. And what the plugin does when a
full partition rejects a publish (``x-overflow = reject-publish``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from cluster_board import ClusterBoard
from cluster_world import (
    CARD,
    amqp_settings,
    backlog,
    check_exactly_once,
    seed,
    settle,
    stored,
    wait_for,
)  # fmt: skip
from rabbit_cluster import RabbitCluster

from cloud.broker import topology
from cloud.broker.amqp_ingest import AmqpIngest
from cloud.ingest.decode import decode

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(rabbit_cluster_module: RabbitCluster) -> Iterator[RabbitCluster]:
    yield rabbit_cluster_module


def _boards(cluster: RabbitCluster, prefix: str, devices: list[str]) -> list[ClusterBoard]:
    ports = [n.mqtt_port for n in cluster.nodes]
    boards = [ClusterBoard(ports, prefix, d, CARD, boot=5, first_node=i)
              for i, d in enumerate(devices)]  # fmt: skip
    wait_for(lambda: all(b.connects for b in boards), 20, "boards to connect")
    time.sleep(0.3)  # their ack subscriptions
    return boards


def test_a_device_stays_in_one_partition_in_order(cluster: RabbitCluster,
                                                  topic_prefix: str) -> None:  # fmt: skip
    settings = amqp_settings(cluster, "postgresql://unused@127.0.0.1/x", topic_prefix)
    topology.declare_with(settings)
    devices = [f"d{i:03d}" for i in range(40)]
    boards = _boards(cluster, topic_prefix, devices)
    try:
        for _ in range(10):
            for b in boards:
                b.tap()
        wait_for(lambda: all(len(b.pubacked) == 10 for b in boards), 30, "PUBACKs")
    finally:
        for b in boards:
            b.close()
    conn = pika.BlockingConnection(pika.URLParameters(cluster.nodes[1].amqp_url))
    seen: dict[str, list[int]] = {}
    where: dict[str, set[str]] = {}
    sizes = []
    try:
        ch = conn.channel()
        for q in topology.queue_names(settings):  # (no basic.get with single active consumer)
            got: list[tuple[str, bytes]] = []
            ch.basic_consume(q, lambda _c, m, _p, body, got=got: got.append((m.routing_key, body)),
                             auto_ack=True)  # fmt: skip
            idle_until = time.monotonic() + 2
            while time.monotonic() < idle_until:
                n = len(got)
                conn.process_data_events(time_limit=0.2)
                if len(got) > n:
                    idle_until = time.monotonic() + 1
            for key, body in got:
                d = decode(topology.mqtt_topic(key), body)
                assert d.device is not None
                seen.setdefault(d.device, []).append(d.first or 0)
                where.setdefault(d.device, set()).add(q)
            sizes.append(len(got))
    finally:
        conn.close()
    assert sum(sizes) == 400 and all(sizes), sizes  # every partition used, nothing missing
    assert all(len(qs) == 1 for qs in where.values())  # no device split across partitions
    assert all(firsts == sorted(firsts) for firsts in seen.values())  # per-device order


def test_boards_through_the_cluster_into_postgresql(
    cluster: RabbitCluster, topic_prefix: str, database_url: str
) -> None:
    devices = [f"gate-{i}" for i in range(6)]
    seed(database_url, devices)
    settings = amqp_settings(cluster, database_url, topic_prefix)
    ingest = AmqpIngest(settings)
    ingest.start()
    boards: list[ClusterBoard] = []
    try:
        assert ingest.wait_ready(30)
        boards = _boards(cluster, topic_prefix, devices)
        for i in range(30):
            for b in boards:
                b.tap(1 + i % 3)
        wait_for(lambda: all(b.all_acked() for b in boards), 60, "every event acked")
        created = [e for b in boards for e in b.created]
        check_exactly_once(database_url, created)
        wait_for(lambda: backlog(cluster, settings) == 0, 20, "the partitions to empty")
        assert ingest.stats["inserted"] == len(created)
        assert ingest.stats["acks"] >= 30 * len(boards)
    finally:
        for b in boards:
            b.close()
        ingest.stop()


def test_a_full_partition_disconnects_the_board_and_loses_nothing(
    cluster: RabbitCluster, topic_prefix: str, database_url: str
) -> None:
    """RabbitMQ 3.10: a quorum queue over x-max-length with reject-publish nacks the publish;
    the MQTT plugin then closes the board's connection without a PUBACK (its process stops on
    the unexpected basic.nack), so the board keeps the batch and re-sends it on reconnect. The
    limit is approximate: publishes in flight when it is reached are still taken."""
    seed(database_url, ["gate-x"])
    settings = amqp_settings(cluster, database_url, topic_prefix, ingest_partitions=1,
                             ingest_partition_max=5, ingest_writers=1)  # fmt: skip
    topology.declare_with(settings)  # no consumer yet: the partition fills up
    (board,) = _boards(cluster, topic_prefix, ["gate-x"])
    try:
        connects = board.connects
        for _ in range(60):
            board.tap()
        time.sleep(4)
        assert board.connects > connects  # disconnected and back, again and again
        assert 5 <= len(board.pubacked) < 60  # some PUBACKed, not all
        # (list_queues reports a quorum queue's length from metrics refreshed every few s)
        wait_for(lambda: backlog(cluster, settings) >= 5, 15, "the partition to hold the limit")
        ingest = AmqpIngest(settings)
        ingest.start()
        try:
            # the ingest drains the partition; paho re-sends the un-PUBACKed batches on each
            # reconnect until they fit, and the acks come back
            wait_for(lambda: len(board.pubacked) == 60, 90, "every batch PUBACKed")
            wait_for(lambda: board.pubacked <= {s for _, _, s in stored(database_url)}, 30,
                     "every PUBACKed event in PostgreSQL")  # fmt: skip
            settle([board], 60)
        finally:
            ingest.stop()
        check_exactly_once(database_url, board.created)
    finally:
        board.close()


def test_the_ingest_process_on_the_cluster(
    cluster: RabbitCluster, topic_prefix: str, database_url: str,
    insecure_dev_env: dict[str, str],
) -> None:  # fmt: skip
    """``python -m cloud.broker.topology`` declares, ``python -m cloud.ingest`` with
    QADAM_BROKER_KIND=rabbitmq stores and acks, and a SIGTERM stops it cleanly."""
    seed(database_url, ["gate-p"])
    env = {
        **os.environ, **insecure_dev_env,
        "QADAM_DATABASE_URL": database_url,
        "QADAM_MQTT_PORT": str(cluster.nodes[0].mqtt_port),
        "QADAM_TOPIC_PREFIX": topic_prefix,
        "QADAM_BROKER_KIND": "rabbitmq",
        "QADAM_AMQP_URLS": json.dumps([n.amqp_url for n in cluster.nodes]),
        "QADAM_INGEST_PARTITIONS": "3",
    }  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "cloud.broker.topology"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert (
        f"declared 3 partitions: {topic_prefix}.ingest.p00 .. {topic_prefix}.ingest.p02" in r.stdout
    )
    proc = subprocess.Popen([sys.executable, "-m", "cloud.ingest"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    (board,) = _boards(cluster, topic_prefix, ["gate-p"])
    try:
        for _ in range(20):
            board.tap(2)
        settle([board], 60)
        check_exactly_once(database_url, board.created)
    finally:
        board.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode(errors="replace")[-2000:]
    assert b"amqp consuming" in out and b"ingest stopped" in out


def test_no_node_answers_is_one_line(topic_prefix: str, database_url: str,
                                     insecure_dev_env: dict[str, str]) -> None:  # fmt: skip
    from rabbit_cluster import free_port

    env = {
        **os.environ, **insecure_dev_env, "QADAM_DATABASE_URL": database_url,
        "QADAM_TOPIC_PREFIX": topic_prefix, "QADAM_BROKER_KIND": "rabbitmq",
        "QADAM_AMQP_URLS": json.dumps([f"amqp://u:secret@127.0.0.1:{free_port()}/%2F"]),
    }  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "cloud.broker.topology"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 3
    assert r.stderr.startswith("qadam: no RabbitMQ node of QADAM_AMQP_URLS answers")
    assert "secret" not in r.stderr
