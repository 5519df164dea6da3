"""ingest_latency: tap-to-commit latency at a steady 1,000 events/s (one event per message).

Measured from the publish to the arrival of the application ack, which the ingest sends only
after the commit: an upper bound of tap-to-commit that includes the ack's way back.
Baseline: the naive consumer at the same rate.
"""

from __future__ import annotations

import time
import uuid

from bench.common import (
    Boards,
    Consumer,
    Row,
    database,
    device_ids,
    median,
    mosquitto,
    percentile,
)

DEVICES = 20
RATE = 1_000
SECONDS = 10


def latencies(kind: str, url: str, port: int, boot: int) -> list[float]:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    devices = device_ids(DEVICES)
    cons = Consumer(kind, url, port, prefix)
    boards = None
    try:
        cons.wait_subscribed()
        boards = Boards(port, prefix)
        n = RATE * SECONDS
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            boards.publish(devices[i % DEVICES], boot, i // DEVICES + 1, 1)
        boards.wait_acks(n, timeout=120)
        return boards.latencies()
    finally:
        if boards is not None:
            boards.close()
        cons.stop()


def run(repeat: int = 3) -> list[Row]:
    p50, p99, worst, n_p99 = [], [], [], []
    with database(DEVICES) as url, mosquitto() as port:
        for r in range(repeat):
            ours = latencies("ingest", url, port, boot=1000 + r)
            naive = latencies("naive", url, port, boot=2000 + r)
            p50.append(percentile(ours, 50) * 1000)
            p99.append(percentile(ours, 99) * 1000)
            worst.append(max(ours) * 1000)
            n_p99.append(percentile(naive, 99) * 1000)
            print(f"run {r + 1}/{repeat}: p50 {p50[-1]:.1f} ms p99 {p99[-1]:.1f} ms "
                  f"max {worst[-1]:.1f} ms; naive p99 {n_p99[-1]:.1f} ms", flush=True)
    return [
        Row(f"p99 tap-to-ack at {RATE:,} events/s", median(p99), "ms", baseline=median(n_p99),
            goal="<= 250 ms"),
        Row(f"p50 tap-to-ack at {RATE:,} events/s", median(p50), "ms",
            goal="informational (flush window ingest_flush_ms = 50)"),
        Row(f"max tap-to-ack at {RATE:,} events/s", median(worst), "ms", goal="informational"),
    ]  # fmt: skip
