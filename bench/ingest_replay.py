"""ingest_replay: a backlog of 32-event batches, as boards re-send their journals after an outage.

The consumer's persistent session is created, the consumer stopped, the backlog published into
the (private) broker, then the consumer started; timed from its first ack to its last ack.
Baseline: the naive consumer (one autocommitted INSERT per event) on the same backlog.
"""

from __future__ import annotations

import uuid

from bench.common import (
    Boards,
    Consumer,
    Row,
    count_events,
    database,
    device_ids,
    median,
    mosquitto,
)

DEVICES = 50
MESSAGES = 1_000
PER_MESSAGE = 32


def replay_rate(kind: str, url: str, port: int, boot: int) -> float:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    devices = device_ids(DEVICES)
    before = count_events(url)
    first = Consumer(kind, url, port, prefix)
    try:
        first.wait_subscribed()
    finally:
        first.stop()
    boards = Boards(port, prefix)
    cons = None
    try:
        for i in range(MESSAGES):
            boards.publish(devices[i % DEVICES], boot, (i // DEVICES) * PER_MESSAGE + 1,
                           PER_MESSAGE)  # fmt: skip
        boards.client.publish(f"{prefix}/sync", b"", qos=1).wait_for_publish(60)
        cons = Consumer(kind, url, port, prefix)
        boards.wait_acks(MESSAGES, timeout=900)
    finally:
        boards.close()
        if cons is not None:
            cons.stop()
    stored = count_events(url) - before
    if stored != MESSAGES * PER_MESSAGE:
        raise AssertionError(f"{kind}: {stored} events stored, {MESSAGES * PER_MESSAGE} sent")
    times = sorted(boards.acked.values())
    return (MESSAGES - 1) * PER_MESSAGE / (times[-1] - times[0])


def run(repeat: int = 3) -> list[Row]:
    ours, naive = [], []
    with database(DEVICES) as url, mosquitto() as port:
        for r in range(repeat):
            ours.append(replay_rate("ingest", url, port, boot=1000 + r))
            naive.append(replay_rate("naive", url, port, boot=2000 + r))
            print(f"run {r + 1}/{repeat}: ingest {ours[-1]:,.0f}/s naive {naive[-1]:,.0f}/s",
                  flush=True)
    return [
        Row(f"replay events/s ({PER_MESSAGE} events/msg, {MESSAGES} msgs queued)", median(ours),
            "events/s", baseline=median(naive), goal=">= 10x the naive consumer"),
    ]  # fmt: skip
