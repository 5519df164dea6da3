"""A database that refuses writes (a standby after a failover, D29-D) is a connection problem
for the ingest, not bad data: it retries on a new connection and quarantines nothing, and the
batch is stored and acked once the server takes writes again."""

from __future__ import annotations

import os

import psycopg
from cloud_helpers import Board, Seed, batch_doc, dumps, topic

from cloud.ingest.service import Ingest
from cloud.settings import Settings

PG_ADMIN_URL = os.environ.get("QADAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _count(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def _read_only(dbname: str, on: bool) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        if on:
            admin.execute(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
        else:
            admin.execute(f'ALTER DATABASE "{dbname}" RESET default_transaction_read_only')


def test_a_read_only_server_is_retried_not_quarantined(settings: Settings, seed: Seed) -> None:
    dbname = settings.database_url.rsplit("/", 1)[1]
    _read_only(dbname, True)  # every new session of the database is read-only
    board = Board(settings.mqtt_host, settings.mqtt_port, settings.topic_prefix)
    ing = Ingest(settings)
    try:
        ing.start()
        assert ing.wait_ready(10)
        board.publish(topic(settings.topic_prefix), dumps(batch_doc(seqs=[1, 2])))
        assert board.no_ack(1.5), "acked although nothing could be stored"
        assert ing.stats["db_errors"] >= 1
        _read_only(dbname, False)  # sessions opened from now on take writes
        _, ack = board.next_ack(timeout=20)
        assert (ack["boot"], ack["first"], ack["last"]) == (7, 1, 2)
        assert _count(settings.database_url, "events") == 2
        assert _count(settings.database_url, "quarantine") == 0
    finally:
        ing.stop()
        board.close()
        _read_only(dbname, False)
