"""Scale-out and operations: shared subscriptions, Prometheus metrics, JSON log lines."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request
from collections.abc import Iterator

import psycopg
import pytest
from cloud_helpers import Board, Seed, batch_doc, drop_session, dumps, topic
from pydantic import ValidationError

from cloud.ingest.service import Ingest
from cloud.logs import JsonFormatter
from cloud.settings import Settings


@pytest.fixture
def board(settings: Settings) -> Iterator[Board]:
    b = Board(settings.mqtt_host, settings.mqtt_port, settings.topic_prefix)
    yield b
    b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rows(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT device_id, boot, seq, person_id FROM events ORDER BY 1, 2, 3"
        ).fetchall()


def test_shared_group_spreads_work_and_stores_the_same(
    settings: Settings, seed: Seed, board: Board
) -> None:
    group = f"g{settings.topic_prefix}"
    workers = [
        Ingest(settings.model_copy(update={
            "ingest_shared_group": group, "ingest_client_id": f"{settings.ingest_client_id}-{i}",
        }))  # fmt: skip
        for i in range(2)
    ]
    assert workers[0].subscription == f"$share/{group}/{settings.topic_prefix}/v1/dev/+/events"
    try:
        for w in workers:
            w.start()
            assert w.wait_ready(10)
        for i in range(30):
            doc = batch_doc(seqs=[2 * i + 1, 2 * i + 2])
            board.publish(topic(settings.topic_prefix), dumps(doc))
            board.publish(topic(settings.topic_prefix), dumps(doc))  # every batch twice
        acks = sorted(board.next_ack()[1]["first"] for _ in range(60))
        assert acks == sorted([2 * i + 1 for i in range(30)] * 2)
        assert board.no_ack(0.3)
    finally:
        for w in workers:
            w.stop()
            drop_session(settings.mqtt_host, settings.mqtt_port, w.settings.ingest_client_id)
    # each worker got a share, and together they stored exactly what one worker would
    assert all(w.stats["messages"] > 0 for w in workers), [w.stats for w in workers]
    assert sum(w.stats["messages"] for w in workers) == 60
    assert sum(w.stats["inserted"] for w in workers) == 60
    assert _rows(settings.database_url) == [("gate-1", 7, s, seed.alice) for s in range(1, 61)]


def test_metrics_endpoint(settings: Settings, seed: Seed, board: Board) -> None:
    s = settings.model_copy(update={"ingest_metrics_port": _free_port()})
    ing = Ingest(s)
    ing.start()
    try:
        assert ing.wait_ready(10)
        assert ing.metrics_port == s.ingest_metrics_port
        good = dumps(batch_doc(seqs=[1, 2, 3]))
        board.publish(topic(s.topic_prefix), good)
        board.next_ack()
        board.publish(topic(s.topic_prefix), good)
        board.publish(topic(s.topic_prefix), dumps(batch_doc(seqs=[4], reader="roof")))
        board.publish(topic(s.topic_prefix, "nobody"), dumps(batch_doc(dev="nobody", seqs=[1])))
        for _ in range(3):
            board.next_ack()
        url = f"http://127.0.0.1:{s.ingest_metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    finally:
        ing.stop()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["qadam_ingest_events_total"] == 3
    assert samples["qadam_ingest_duplicates_total"] == 3
    assert samples['qadam_ingest_rejects_total{reason="bad_event"}'] == 1
    assert samples['qadam_ingest_rejects_total{reason="unknown_device"}'] == 1
    assert samples["qadam_ingest_acks_total"] == 4
    assert samples["qadam_ingest_batch_size_sum"] == 6
    assert samples["qadam_ingest_commit_seconds_count"] >= 2
    assert samples["qadam_ingest_queue_depth"] == 0
    assert samples["qadam_ingest_lag_seconds"] > 0
    # stopped: the endpoint is gone
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_json_log_lines() -> None:
    rec = logging.LogRecord("qadam.ingest", logging.INFO, __file__, 1, "ingest flush %s",
                            ("messages=2",), None)  # fmt: skip
    rec.event = "ingest flush"
    rec.fields = {"messages": 2, "ms": 1.5, "reason": ValueError("x")}
    line = json.loads(JsonFormatter().format(rec))
    assert line["msg"] == "ingest flush" and line["level"] == "info"
    assert (line["messages"], line["ms"], line["reason"]) == (2, 1.5, "x")
    assert line["ts"].endswith("Z")
    plain = logging.LogRecord("x", logging.WARNING, __file__, 1, "plain %d", (5,), None)
    assert json.loads(JsonFormatter().format(plain))["msg"] == "plain 5"


@pytest.mark.parametrize(
    "bad",
    [
        {"ingest_shared_group": "a/b"},
        {"ingest_shared_group": "+"},
        {"ingest_shared_group": ""},
        {"ingest_metrics_port": -1},
        {"ingest_metrics_port": 70000},
    ],
)
def test_bad_scaleout_settings_fail_fast(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]
