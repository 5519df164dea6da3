"""What the cluster tests share (D29-C): the school and boards in the database, the AMQP ingest's
settings for a cluster, waiting, and the exactly-once check of events and their derived rows."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
from cloud_helpers import NOTED_TAPS
from cluster_board import ClusterBoard
from rabbit_cluster import RabbitCluster

from cloud.broker import topology
from cloud.domain import registry
from cloud.settings import Settings

CARD = "0123456789abcdef"


def wait_for(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def settle(boards: list[ClusterBoard], timeout: float, resend_s: float = 3.0) -> int:
    """Wait until every board has every event acked, re-sending what is not acked every
    ``resend_s`` (the board's ack timeout). Returns how many batches were re-sent."""
    deadline = time.monotonic() + timeout
    resent = 0
    while not all(b.all_acked() for b in boards):
        assert time.monotonic() < deadline, "timed out waiting for every event to be acked"
        wait_until = time.monotonic() + resend_s
        while time.monotonic() < wait_until and not all(b.all_acked() for b in boards):
            time.sleep(0.1)
        if not all(b.all_acked() for b in boards):
            resent += sum(b.resend_unacked() for b in boards)
    return resent


def seed(url: str, devices: list[str]) -> None:
    with psycopg.connect(url) as conn:
        registry.create_school(conn, "c1", "Cluster School", b"k" * 32)
        person = registry.add_person(conn, "c1", "student", "Dana")
        registry.add_card(conn, person, CARD)
        for d in devices:
            registry.register_device(conn, d, "c1", d, "turnstile", "mfrc522")


def amqp_settings(cluster: RabbitCluster, url: str, prefix: str, **over: Any) -> Settings:
    values: dict[str, Any] = dict(
        database_url=url, topic_prefix=prefix, broker_kind="rabbitmq",
        amqp_urls=tuple(n.amqp_url for n in cluster.nodes), ingest_partitions=4,
        ingest_writers=2, ingest_flush_ms=20, broker_probe_s=0,
    )  # fmt: skip
    values.update(over)
    return Settings(**values)


def backlog(cluster: RabbitCluster, settings: Settings) -> int:
    """Messages in the ingest's partitions, ready or delivered and not yet acked."""
    r = cluster.ctl(cluster.alive()[0], "list_queues", "name", "messages", "--formatter", "json")
    mine = set(topology.queue_names(settings))
    return sum(int(q["messages"]) for q in json.loads(r.stdout) if q["name"] in mine)


def stored(url: str) -> list[tuple[str, int, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT device_id, boot, seq FROM events").fetchall()
    return sorted((str(d), int(b), int(s)) for d, b, s in rows)


def check_exactly_once(url: str, created: list[tuple[str, int, int]]) -> None:
    """Every created event stored once, with its derived rows once (every event is a granted tap
    of a known pupil; seq % 3 == 2 is a canteen tap: a meal, a Social Wallet record)."""
    created = sorted(created)
    ids = stored(url)
    assert len(ids) == len(set(ids)), "an event was stored twice"
    assert ids == created, (
        f"stored {len(ids)} events, the boards created {len(created)}:"
        f" missing {sorted(set(created) - set(ids))[:10]}"
    )
    with psycopg.connect(url) as conn:
        n_wallet, n_outbox, n_keys = conn.execute(
            "SELECT count(*) FILTER (WHERE kind = 'social_wallet'), count(*),"
            " count(DISTINCT idempotency_key) FROM outbox"
        ).fetchone() or (0, 0, 0)
        notified = conn.execute(
            "SELECT o.payload->>'device_id', (o.payload->>'boot')::bigint, t.seq"
            f" FROM {NOTED_TAPS} WHERE o.kind = 'parent_notification'"
        ).fetchall()
        n_notes = conn.execute(
            "SELECT count(*) FROM outbox WHERE kind = 'parent_notification'"
        ).fetchone()
        meals = conn.execute("SELECT count(*) FROM meal_receipts").fetchone()
        passages = conn.execute("SELECT coalesce(sum(passages), 0) FROM attendance").fetchone()
    canteen = sum(1 for _, _, s in created if s % 3 == 2)
    assert sorted((str(d), int(b), int(s)) for d, b, s in notified) == created
    assert n_wallet == canteen
    assert n_notes is not None and n_outbox == n_keys == n_notes[0] + canteen
    assert meals is not None and meals[0] == canteen
    assert passages is not None and passages[0] == len(created) - canteen
