"""ingest_replay: a backlog of 32-event batches, as boards re-send their journals after an outage.

The consumer's persistent session is created, the consumer stopped, the backlog published into
the (private) broker, then the consumer started again. Timed from that start to its last ack,
less the consumer's own start-up (process start to subscribed, measured on the first, empty
start in the same run). Not from the first ack: with flushes of hundreds of messages the first
ack comes after a whole flush, which would leave that flush's work out of the time.
Baseline: the naive consumer (one autocommitted INSERT per event) on a smaller backlog of the
same messages (it is ~30x slower; its rate is steady from the first message). The raw limit:
binary COPY of the same rows into an unlogged table without indexes (bench.ingest_live), in the
same run.
"""

from __future__ import annotations

import time
import uuid

from bench.common import (
    AckSink,
    Boards,
    Consumer,
    Row,
    count_events,
    database,
    device_ids,
    median,
    mosquitto,
)
from bench.ingest_live import copy_rate

DEVICES = 50
MESSAGES = {"ingest": 15_000, "naive": 500}
PER_MESSAGE = 32


def replay_rate(kind: str, url: str, port: int, boot: int) -> float:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    devices = device_ids(DEVICES)
    before = count_events(url)
    messages = MESSAGES[kind]
    t_start = time.perf_counter()
    first = Consumer(kind, url, port, prefix)
    try:
        first.wait_subscribed()
        startup = time.perf_counter() - t_start
    finally:
        first.stop()
    # The acks are collected in C (AckSink): a Python client took ~0.2 of the 2 cores for
    # 15,000 acks, which the system under test needs (the live bench does the same).
    sink = AckSink(port, prefix, messages)
    boards = Boards(port, prefix, acks=False)
    cons = None
    try:
        for i in range(messages):
            boards.publish(devices[i % DEVICES], boot, (i // DEVICES) * PER_MESSAGE + 1,
                           PER_MESSAGE)  # fmt: skip
        boards.client.publish(f"{prefix}/sync", b"", qos=1).wait_for_publish(60)
        t0 = time.time()  # the sink stamps acks with wall-clock time
        cons = Consumer(kind, url, port, prefix)
        acked = sink.wait(timeout=900)
    finally:
        sink.close()
        boards.close()
        if cons is not None:
            cons.stop()
    if len(acked) != messages:
        raise AssertionError(f"{kind}: {len(acked)} distinct acks, {messages} sent")
    stored = count_events(url) - before
    if stored != messages * PER_MESSAGE:
        raise AssertionError(f"{kind}: {stored} events stored, {messages * PER_MESSAGE} sent")
    return messages * PER_MESSAGE / (max(acked.values()) - t0 - startup)


def run(repeat: int = 3) -> list[Row]:
    ours, naive, limit = [], [], []
    with database(DEVICES) as url, mosquitto() as port:
        for r in range(repeat):
            ours.append(replay_rate("ingest", url, port, boot=1000 + r))
            naive.append(replay_rate("naive", url, port, boot=2000 + r))
            limit.append(copy_rate(url))
            print(f"run {r + 1}/{repeat}: ingest {ours[-1]:,.0f}/s naive {naive[-1]:,.0f}/s",
                  flush=True)
    return [
        Row(f"replay events/s ({PER_MESSAGE} events/msg, {MESSAGES['ingest']:,} msgs queued)",
            median(ours),
            "events/s", baseline=median(naive), goal=">= 100,000 events/s (issue #4)"),
        Row("replay as a share of the raw COPY limit", median(ours), "events/s",
            baseline=median(limit), goal="informational: unlogged COPY, no indexes, same run"),
    ]  # fmt: skip
