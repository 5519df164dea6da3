"""The ingest service end to end: real Mosquitto, real PostgreSQL, paho playing the boards."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cloud_helpers import Board, Seed, batch_doc, dumps, topic

from cloud.ingest.service import Ingest
from cloud.settings import Settings


@pytest.fixture
def board(settings: Settings) -> Iterator[Board]:
    b = Board(settings.mqtt_host, settings.mqtt_port, settings.topic_prefix)
    yield b
    b.close()


def _running(settings: Settings) -> Ingest:
    ing = Ingest(settings)
    ing.start()
    assert ing.wait_ready(10), "ingest did not subscribe"
    return ing


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def _acks(board: Board, n: int) -> list[tuple[str, dict[str, Any]]]:
    return [board.next_ack() for _ in range(n)]


def test_batches_are_stored_then_acked(settings: Settings, seed: Seed, board: Board) -> None:
    p = settings.topic_prefix
    ing = _running(settings)
    try:
        good = dumps(batch_doc(seqs=range(1, 4)))
        board.publish(topic(p), good)
        t, ack = board.next_ack()
        assert (t, ack) == (f"{p}/v1/dev/gate-1/ack", {"v": 1, "boot": 7, "first": 1, "last": 3})
        # the ack came after the commit: the rows are visible now
        assert _count(settings.database_url, "SELECT count(*) FROM events") == 3

        board.publish(topic(p), good)  # retransmission: acked again, stored once
        board.publish(topic(p, "stranger"), dumps(batch_doc(dev="stranger", seqs=[9])))
        board.publish(topic(p), dumps(batch_doc(seqs=[4, 5], card="NOT-HEX")))  # rejected
        board.publish(topic(p), b"\xffgarbage")  # no readable range: quarantined, no ack
        board.publish(topic(p), dumps(batch_doc(seqs=[6])))
        got = sorted((t, a["boot"], a["first"], a["last"]) for t, a in _acks(board, 4))
        assert got == sorted(
            [
                (f"{p}/v1/dev/gate-1/ack", 7, 1, 3),
                (f"{p}/v1/dev/stranger/ack", 7, 9, 9),
                (f"{p}/v1/dev/gate-1/ack", 7, 4, 5),
                (f"{p}/v1/dev/gate-1/ack", 7, 6, 6),
            ]
        )
        assert board.no_ack(0.5)
        url = settings.database_url
        assert _count(url, "SELECT count(*) FROM events") == 4
        assert _count(url, "SELECT count(*) FROM quarantine") == 3
        assert _count(url, f"SELECT count(*) FROM events WHERE person_id = {seed.alice}") == 4
        assert ing.stats["inserted"] == 4 and ing.stats["duplicates"] == 3
    finally:
        ing.stop()


def test_backpressure_with_tiny_queue_loses_nothing(
    settings: Settings, seed: Seed, board: Board
) -> None:
    s = settings.model_copy(update={"ingest_queue_max": 1, "ingest_batch_max": 2})
    ing = _running(s)
    try:
        for i in range(40):
            board.publish(topic(s.topic_prefix), dumps(batch_doc(seqs=[2 * i + 1, 2 * i + 2])))
        firsts = sorted(a["first"] for _, a in _acks(board, 40))
        assert firsts == [2 * i + 1 for i in range(40)]
        assert _count(s.database_url, "SELECT count(*) FROM events") == 80
    finally:
        ing.stop()


def test_messages_published_while_stopped_arrive_after_restart(
    settings: Settings, seed: Seed, board: Board
) -> None:
    ing = _running(settings)
    ing.stop()  # persistent session: the broker queues for us
    board.publish(topic(settings.topic_prefix), dumps(batch_doc(seqs=[1, 2])))
    assert board.no_ack(0.3)
    ing2 = _running(settings)
    try:
        _, ack = board.next_ack()
        assert (ack["first"], ack["last"]) == (1, 2)
        assert _count(settings.database_url, "SELECT count(*) FROM events") == 2
    finally:
        ing2.stop()


def test_database_outage_retries_the_same_batch(
    settings: Settings, board: Board, db_template: str
) -> None:
    admin_url = settings.database_url.rsplit("/", 1)[0] + "/postgres"
    name = f"qadam_late_{uuid.uuid4().hex[:10]}"
    url = settings.database_url.rsplit("/", 1)[0] + "/" + name
    s = settings.model_copy(update={"database_url": url})  # does not exist yet
    ing = _running(s)
    try:
        board.publish(topic(s.topic_prefix, "nobody"), dumps(batch_doc(dev="nobody", seqs=[1])))
        assert board.no_ack(1.0), "acked although nothing could be stored"
        assert ing.stats["db_errors"] >= 1
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{db_template}"')
        _, ack = board.next_ack(timeout=15)
        assert (ack["boot"], ack["first"], ack["last"]) == (7, 1, 1)
        assert _count(url, "SELECT count(*) FROM quarantine WHERE reason = 'unknown_device'") == 1
    finally:
        ing.stop()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_stop_is_prompt_and_idempotent(settings: Settings) -> None:
    ing = _running(settings)
    t0 = time.monotonic()
    ing.stop()
    ing.stop()
    assert time.monotonic() - t0 < 5


def test_several_writers_keep_each_boards_acks_in_order(
    settings: Settings, seed: Seed, board: Board
) -> None:
    from cloud.domain import registry
    from cloud.ingest.shard import shard_of

    writers = 3
    devices = [f"door-{i}" for i in range(12)]
    with psycopg.connect(settings.database_url) as conn:
        for d in devices:
            registry.register_device(conn, d, "s1", d, "door", "mfrc522")
    assert len({shard_of(d, writers) for d in devices}) == writers  # spread over all of them
    s = settings.model_copy(update={"ingest_writers": writers, "ingest_batch_max": 5})
    p = s.topic_prefix
    ing = _running(s)
    try:
        for k in range(6):
            for d in devices:
                board.publish(
                    topic(p, d), dumps(batch_doc(dev=d, seqs=range(4 * k + 1, 4 * k + 5)))
                )
        per_device: dict[str, list[int]] = {}
        for t, a in _acks(board, 6 * len(devices)):
            per_device.setdefault(t.split("/")[-2], []).append(a["first"])
        # one board's batches are committed and acked in the order it sent them
        assert per_device == {d: [1, 5, 9, 13, 17, 21] for d in devices}
        assert _count(s.database_url, "SELECT count(*) FROM events") == 6 * 4 * len(devices)
        # each writer stored its share on its own connection
        assert (
            _count(
                s.database_url,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'qadam-ingest'",
            )
            == writers
        )
    finally:
        ing.stop()


def test_a_device_always_maps_to_the_same_writer() -> None:
    from cloud.ingest.shard import shard_of

    devices = [f"gate-{i}" for i in range(200)] + ["ä-ö", "\udcff"]
    assert [shard_of(d, 4) for d in devices] == [shard_of(d, 4) for d in devices]
    counts = [sum(1 for d in devices if shard_of(d, 4) == i) for i in range(4)]
    assert min(counts) >= 30  # no writer starves
    assert {shard_of(d, 1) for d in devices} == {0} and shard_of(None, 4) == 0
