"""webhook_rows: what the webhook rows (D29-I) cost the ingest's writer, per flush.

The ingest's own ``write()`` (cloud/ingest/writer.py) on a migrated throwaway database, no
broker: flushes as live traffic makes them (50 boards, one tap each) and as a replay does
(50 boards, 32 taps each), for a school without webhook subscribers (the common case: the
statement part joins the runs with no subscriber) and with 3 subscribers (3 rows per run).
Baseline: the same flushes with the webhook part replaced by a no-op, i.e. the writer before
D29-I. Median time per flush over ``FLUSHES`` flushes, fresh events each.
"""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg

from bench.common import CARD, T0, Row, database, device_ids, median

BOARDS = 50
FLUSHES = 120
NOOP = "SELECT 1 WHERE %s::text IS NULL"


def _flush(devices: list[str], boot: int, first_seq: int, per_board: int) -> list[Any]:
    from cloud.ingest.decode import Batch, decode

    out = []
    for d in devices:
        events = [{"boot": boot, "seq": s, "t": T0 + s, "sync": 1, "up": 1000 * s, "kind": "tap",
                   "reader": "in", "card": CARD, "result": "granted", "reason": "ok"}
                  for s in range(first_seq, first_seq + per_board)]  # fmt: skip
        doc = {"v": 1, "dev": d, "boot": boot, "events": events}
        b = decode(f"bench/v1/dev/{d}/events", json.dumps(doc).encode())
        assert isinstance(b, Batch), b
        out.append(b)
    return out


def _time_flushes(url: str, boot: int, per_board: int) -> float:
    from cloud.ingest.writer import write

    devices = device_ids(BOARDS)
    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        for i in range(FLUSHES):
            batches = _flush(devices, boot, 1 + i * per_board, per_board)
            t0 = time.perf_counter()
            write(conn, batches)
            times.append(time.perf_counter() - t0)
    return median(times[5:]) * 1000  # the first flushes warm caches


def _subscribe(url: str, n: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM webhook_subscriptions")
        for i in range(n):
            conn.execute(
                "INSERT INTO webhook_subscriptions (school_id, url, events, secret)"
                " VALUES ('b1', %s, '{passage,meal}', repeat('s', 40))",
                (f"https://hooks.example.kz/{i}",),
            )


def run(repeat: int = 3) -> list[Row]:
    from cloud.ingest import derive

    real = derive._WEBHOOKS
    rows = []
    boot = 1
    with database(BOARDS) as url:
        for shape, per_board in (("live (50 x 1 tap)", 1), ("replay (50 x 32 taps)", 32)):
            got: dict[str, list[float]] = {"none": [], "three": [], "before": []}
            for _ in range(repeat):
                for case, subs, statement in (("before", 0, NOOP), ("none", 0, real),
                                              ("three", 3, real)):  # fmt: skip
                    _subscribe(url, subs)
                    derive._WEBHOOKS = statement
                    try:
                        got[case].append(_time_flushes(url, boot, per_board))
                    finally:
                        derive._WEBHOOKS = real
                    boot += 1
            before = median(got["before"])
            rows.append(Row(f"{shape}: no subscribers, ms/flush", median(got["none"]), "ms",
                            before, goal="~ the writer before D29-I"))  # fmt: skip
            rows.append(Row(f"{shape}: 3 subscribers, ms/flush", median(got["three"]), "ms",
                            before))  # fmt: skip
    return rows
