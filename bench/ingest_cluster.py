"""ingest_cluster: the ingest through a 3-node RabbitMQ cluster vs through Mosquitto, same run.

- live: one event per message, 20 devices, published by C ``mosquitto_pub`` (QoS 1) spread
  over the cluster's nodes, acks collected in C (bench.common.AckSink); timed from the first
  publish to the last application ack. The Mosquitto figure is bench.ingest_live's run.
- replay: a queued backlog of 32-event batches drained by the ingest from its start to the
  last ack (bench.ingest_replay's method; the AMQP ingest's start-up is measured on an empty
  start and subtracted, as there).
- live with node loss: the cluster live run, with the node that leads every partition and
  serves the ingest's first consumer killed (SIGKILL) after a third of the messages; the
  publishers and the ack collector are on the other two nodes. Every message is still stored
  and acked (checked), and the run's rate includes the failover.

The cluster is tests/cluster/rabbit_cluster.py's (own nodes, ports and data folders on
loopback), started once for the whole run; the ingest is ``python -m cloud.ingest`` with
QADAM_BROKER_KIND=rabbitmq, 4 partitions and 2 consumers. All on the same 2 cores: three Erlang
nodes with one scheduler each, PostgreSQL, the ingest and the load generators.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import (
    REPO,
    AckSink,
    Boards,
    Consumer,
    Row,
    batch,
    count_events,
    database,
    device_ids,
    median,
    mosquitto,
)
from bench.ingest_live import live_rate
from bench.ingest_replay import replay_rate

sys.path.insert(0, str(REPO / "tests" / "cluster"))
from rabbit_cluster import RabbitCluster  # noqa: E402

DEVICES = 20
LIVE_MESSAGES = 20_000
REPLAY_MESSAGES = 5_000
PER_MESSAGE = 32
PARTITIONS = 4
CONSUMERS = 2


@contextmanager
def cluster() -> Iterator[RabbitCluster]:
    work = Path(tempfile.mkdtemp(prefix="qadam-bench-rmq-"))
    c = RabbitCluster(work)
    try:
        yield c.start()
    finally:
        c.stop()
        shutil.rmtree(work, ignore_errors=True)


def _ingest(c: RabbitCluster, url: str, prefix: str) -> tuple[Consumer, float]:
    """The AMQP ingest as a process, and its start-up time (process start to consuming)."""
    t0 = time.perf_counter()
    cons = Consumer(
        "ingest", url, c.nodes[0].mqtt_port, prefix, broker_kind="rabbitmq",
        amqp_urls=json.dumps([n.amqp_url for n in c.nodes]),
        ingest_partitions=str(PARTITIONS), ingest_writers=str(CONSUMERS),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while Path(cons.log.name).read_bytes().count(b"amqp consuming") < CONSUMERS:
        if cons.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the AMQP ingest did not start: {cons.tail()}")
        time.sleep(0.05)
    return cons, time.perf_counter() - t0


def cluster_live(c: RabbitCluster, url: str, boot: int, kill: bool = False) -> float:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    devices = device_ids(DEVICES)
    before = count_events(url)
    cons, _ = _ingest(c, url, prefix)
    live = c.alive()
    pub_nodes = live[1:] if kill else live  # with a kill, nobody publishes to the victim
    sink = None
    try:
        # With a kill, redelivered messages are acked twice: the sink must not stop at a count
        # of acks, so it is read for distinct ones (_distinct_acks) and stopped after.
        sink = AckSink(pub_nodes[0].mqtt_port, prefix, LIVE_MESSAGES * (2 if kill else 1))
        per_device = LIVE_MESSAGES // DEVICES
        t0 = time.time()
        pubs = []
        for i, d in enumerate(devices):
            node = pub_nodes[i % len(pub_nodes)]
            proc = subprocess.Popen(
                ["mosquitto_pub", "-p", str(node.mqtt_port), "-q", "1", "-l",
                 "-t", f"{prefix}/v1/dev/{d}/events"], stdin=subprocess.PIPE,
            )  # fmt: skip
            pubs.append((proc, b"".join(batch(d, boot, s, 1) + b"\n"
                                        for s in range(1, per_device + 1))))  # fmt: skip
        killer = None
        if kill:
            victim = live[0]  # leads every partition (declared there) and serves consumer 0
            third = before + LIVE_MESSAGES // 3

            def kill_at_a_third() -> None:
                while count_events(url) < third:
                    time.sleep(0.05)
                c.kill(victim)

            killer = threading.Thread(target=kill_at_a_third, daemon=True)
            killer.start()
        for proc, data in pubs:
            assert proc.stdin is not None
            proc.stdin.write(data)
            proc.stdin.close()
        for proc, _ in pubs:
            if proc.wait(600) != 0:
                raise RuntimeError("mosquitto_pub failed")
        acked = _distinct_acks(sink, LIVE_MESSAGES, 600) if kill else sink.wait(timeout=600)
        if killer is not None:
            killer.join(60)
            assert victim.killed, "the node was not killed during the run"
    finally:
        if sink is not None:
            sink.close()
        cons.stop()
    if len(acked) != LIVE_MESSAGES:
        raise AssertionError(f"cluster: {len(acked)} distinct acks, {LIVE_MESSAGES} sent")
    stored = count_events(url) - before
    if stored != LIVE_MESSAGES:
        raise AssertionError(f"cluster: {stored} events stored, {LIVE_MESSAGES} sent")
    return LIVE_MESSAGES / (max(acked.values()) - t0)


def _distinct_acks(sink: AckSink, count: int, timeout: float) -> dict[tuple[str, int, int], float]:
    """(device, boot, last) -> first arrival of each distinct ack, once ``count`` of them came."""
    deadline = time.monotonic() + timeout
    while True:
        acked: dict[tuple[str, int, int], float] = {}
        for line in Path(sink.out.name).read_text().splitlines():
            parts = line.split(" ", 2)
            if len(parts) < 3:
                continue  # a line being written
            try:
                a = json.loads(parts[2])
            except ValueError:
                continue
            acked.setdefault((parts[1].split("/")[-2], a["boot"], a["last"]), float(parts[0]))
        if len(acked) >= count or time.monotonic() > deadline:
            return acked
        time.sleep(0.5)


def cluster_replay(c: RabbitCluster, url: str, boot: int) -> float:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    devices = device_ids(DEVICES)
    before = count_events(url)
    first, startup = _ingest(c, url, prefix)  # declares the partitions; its start-up time
    first.stop()
    node = c.alive()[1]
    sink = AckSink(node.mqtt_port, prefix, REPLAY_MESSAGES)
    boards = Boards(node.mqtt_port, prefix, acks=False)
    cons = None
    try:
        for i in range(REPLAY_MESSAGES):
            boards.publish(devices[i % DEVICES], boot, (i // DEVICES) * PER_MESSAGE + 1,
                           PER_MESSAGE)  # fmt: skip
        boards.client.publish(f"{prefix}/sync", b"", qos=1).wait_for_publish(120)
        t0 = time.time()
        cons, _ = _ingest(c, url, prefix)
        acked = sink.wait(timeout=900)
    finally:
        sink.close()
        boards.close()
        if cons is not None:
            cons.stop()
    if len(acked) != REPLAY_MESSAGES:
        raise AssertionError(f"cluster replay: {len(acked)} acks, {REPLAY_MESSAGES} sent")
    stored = count_events(url) - before
    if stored != REPLAY_MESSAGES * PER_MESSAGE:
        raise AssertionError(f"cluster replay: {stored} events, {REPLAY_MESSAGES * 32} sent")
    return REPLAY_MESSAGES * PER_MESSAGE / (max(acked.values()) - t0 - startup)


def run(repeat: int = 3) -> list[Row]:
    mos_live, rmq_live, mos_replay, rmq_replay = [], [], [], []
    # ingest_replay spreads its backlog over 50 devices: all of them registered
    with database(50) as url, mosquitto() as port, cluster() as c:
        for r in range(repeat):
            mos_live.append(live_rate("ingest", url, port, boot=1000 + r))
            rmq_live.append(cluster_live(c, url, boot=2000 + r))
            mos_replay.append(replay_rate("ingest", url, port, boot=3000 + r))
            rmq_replay.append(cluster_replay(c, url, boot=4000 + r))
            print(f"run {r + 1}/{repeat}: live mosquitto {mos_live[-1]:,.0f}/s cluster "
                  f"{rmq_live[-1]:,.0f}/s; replay mosquitto {mos_replay[-1]:,.0f}/s cluster "
                  f"{rmq_replay[-1]:,.0f}/s", flush=True)  # fmt: skip
        loss = cluster_live(c, url, boot=9000, kill=True)  # last: the cluster runs on two nodes
        print(f"live with a node killed: {loss:,.0f}/s", flush=True)
    return [
        Row("live events/s through the 3-node cluster (1 event/msg, acks included)",
            median(rmq_live), "events/s", baseline=median(mos_live),
            goal="informational: vs Mosquitto, same machine"),
        Row(f"replay events/s through the cluster ({PER_MESSAGE} events/msg)", median(rmq_replay),
            "events/s", baseline=median(mos_replay), goal="informational: vs Mosquitto"),
        Row("live events/s through the cluster, partition leaders' node killed at 1/3",
            loss, "events/s", baseline=median(rmq_live),
            goal="every message stored and acked (checked)"),
    ]  # fmt: skip


if __name__ == "__main__":
    from bench.common import report

    report("ingest_cluster", run(int(sys.argv[1]) if len(sys.argv) > 1 else 1))
