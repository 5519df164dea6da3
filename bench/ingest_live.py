"""ingest_live: one event per MQTT message, as boards send taps live.

Through a private Mosquitto, the ingest process and PostgreSQL, timed from the first publish to
the last application ack (so the ack round trip is included). Publishers and the ack collector
are the C mosquitto clients, so the harness takes little of the 2 cores. Baseline: the naive
consumer (one autocommitted INSERT per event). In the same run, the database-side limits: raw
binary COPY into an unlogged table, and the writer's COPY -> staging -> INSERT ... ON CONFLICT
path (with the derived rows) called directly.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import psycopg

from bench.common import (
    BROKER_PIDS,
    AckSink,
    Consumer,
    Row,
    batch,
    count_events,
    cpu_seconds,
    database,
    device_ids,
    median,
    mosquitto,
)
from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import _STAGING_TYPES, write

DEVICES = 20
# Published by one C mosquitto_pub per device, so the harness is not the limit. 30,000 for the
# ingest (D22): a 10,000-message run lasted ~1 s, of which starting 20 publishers and the first
# flushes took a fifth, so it measured the start more than the sustained rate. The naive
# consumer's rate is steady from the first message.
MESSAGES = {"ingest": 30_000, "naive": 10_000}
COPY_ROWS = 200_000
# CPU seconds per 1,000 events of the single-worker ingest runs: where the 2 cores go.
CPU: dict[str, list[float]] = {"broker": [], "ingest": [], "postgres": []}
WRITE_BATCHES = 2_000  # of 32 events


def live_rate(kind: str, url: str, port: int, boot: int, workers: int = 1) -> float:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    devices = device_ids(DEVICES)
    messages = MESSAGES[kind]
    before = count_events(url)
    group = {"ingest_shared_group": prefix} if workers > 1 else {}
    consumers = [Consumer(kind, url, port, prefix, worker=w, **group) for w in range(workers)]
    sink = None
    try:
        for cons in consumers:
            cons.wait_subscribed()
        sink = AckSink(port, prefix, messages)
        pids = {"broker": BROKER_PIDS[port], "ingest": consumers[0].proc.pid}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        per_device = messages // DEVICES
        lines = {d: b"".join(batch(d, boot, s, 1) + b"\n" for s in range(1, per_device + 1))
                 for d in devices}  # fmt: skip
        t0 = time.time()  # the sink stamps acks with wall-clock time
        pubs = [
            (subprocess.Popen(["mosquitto_pub", "-p", str(port), "-q", "1", "-l",
                               "-t", f"{prefix}/v1/dev/{d}/events"], stdin=subprocess.PIPE),
             lines[d])
            for d in devices
        ]  # fmt: skip
        for proc, data in pubs:
            assert proc.stdin is not None
            proc.stdin.write(data)
            proc.stdin.close()
        for proc, _ in pubs:
            if proc.wait(600) != 0:
                raise RuntimeError("mosquitto_pub failed")
        acked = sink.wait(timeout=600)
        if len(acked) != messages:
            raise AssertionError(f"{kind}: {len(acked)} distinct acks, {messages} sent")
        elapsed = max(acked.values()) - t0
        if kind == "ingest" and workers == 1:
            # The ingest opens its database connection at its first flush: its backend's whole
            # CPU time (connect included) counts for this run.
            pids["postgres"] = _backend_pid(url)
            cpu0["postgres"] = 0.0
            for k, p in pids.items():
                CPU[k].append((cpu_seconds(p) - cpu0[k]) * 1000 / messages)
    finally:
        if sink is not None:
            sink.close()
        for cons in consumers:
            cons.stop()
    stored = count_events(url) - before
    if stored != messages:
        raise AssertionError(f"{kind}: {stored} events stored, {messages} sent")
    return messages / elapsed


def _backend_pid(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'qadam-ingest'"
        ).fetchone()
    if row is None:
        raise RuntimeError("the ingest's database connection is not in pg_stat_activity")
    return int(row[0])


def copy_rate(url: str) -> float:
    row = ("bench-0", 1, 1, "0123456789abcdef", "tap", "in", "granted", "ok", 1_760_000_000,
           True, 5, None, None)  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE UNLOGGED TABLE IF NOT EXISTS bench_copy (device_id text, boot bigint,"
            " seq bigint, card_key text, kind text, reader text, result text, reason text,"
            " t bigint, sync boolean, up bigint, dish bigint, method text)"
        )
        conn.execute("TRUNCATE bench_copy")
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy("COPY bench_copy FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(_STAGING_TYPES)
                for i in range(COPY_ROWS):
                    cp.write_row(row[:2] + (i,) + row[3:])
        elapsed = time.perf_counter() - t0
        conn.execute("DROP TABLE bench_copy")
    return COPY_ROWS / elapsed


def writer_rate(url: str, boot: int) -> float:
    batches = []
    for i in range(WRITE_BATCHES):
        dev = f"bench-{i % DEVICES}"
        b = decode(f"x/v1/dev/{dev}/events", batch(dev, boot, (i // DEVICES) * 32 + 1, 32))
        assert isinstance(b, Batch)
        batches.append(b)
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        for i in range(0, WRITE_BATCHES, 16):  # 512 events per transaction
            write(conn, batches[i : i + 16])
        elapsed = time.perf_counter() - t0
    return WRITE_BATCHES * 32 / elapsed


def run(repeat: int = 3) -> list[Row]:
    ours, shared, naive, copy, writer = [], [], [], [], []
    with database(DEVICES) as url, mosquitto() as port:
        for r in range(repeat):
            ours.append(live_rate("ingest", url, port, boot=1000 + r))
            shared.append(live_rate("ingest", url, port, boot=4000 + r, workers=2))
            naive.append(live_rate("naive", url, port, boot=2000 + r))
            copy.append(copy_rate(url))
            writer.append(writer_rate(url, boot=3000 + r))
            print(f"run {r + 1}/{repeat}: ingest {ours[-1]:,.0f}/s 2 shared workers "
                  f"{shared[-1]:,.0f}/s naive {naive[-1]:,.0f}/s "
                  f"copy {copy[-1]:,.0f}/s writer {writer[-1]:,.0f}/s", flush=True)
    live = median(ours)
    return [
        Row("live events/s (1 event/msg, acks included)", live, "events/s",
            baseline=median(naive), goal=">= 10,000 events/s and >= 3x the naive consumer"),
        Row("live events/s, 2 ingest workers on a shared subscription", median(shared),
            "events/s", baseline=live, goal="informational (2 cores shared with PG + broker)"),
        Row("writer COPY->staging->INSERT ON CONFLICT (+derived rows), direct", median(writer),
            "events/s", baseline=median(copy), goal="informational: share of the COPY limit"),
        Row("raw binary COPY into an unlogged table", median(copy), "rows/s",
            goal="the database-side ceiling"),
        *[Row(f"CPU seconds per 1,000 live events: {k}", median(v), "s", goal="informational")
          for k, v in CPU.items() if v],
        Row("live ingest as a share of the raw COPY limit", live / median(copy), "ratio",
            goal="informational"),
    ]  # fmt: skip
