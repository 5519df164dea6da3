"""Ingest integrity (issue #13 item 7): an identity (device, boot, seq) stored with other content
is an alarm, handled visibly (quarantine with a reason, a metric, an ack), never a silent drop;
a byte-identical retransmission stays a silent dedupe."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cloud_helpers import CARD_B, T0, Board, Seed, batch_doc, dumps, topic

from cloud.ingest.decode import IDENTITY_REUSED, Batch, decode
from cloud.ingest.service import Ingest
from cloud.ingest.writer import Ack, write
from cloud.settings import Settings

PREFIX = "qadam"


def _batch(**kw: Any) -> Batch:
    dev = kw.get("dev", "gate-1")
    got = decode(topic(PREFIX, dev), dumps(batch_doc(**kw)))
    assert isinstance(got, Batch), got
    return got


def _meal(seq: int, boot: int, life: int) -> dict[str, Any]:
    """A canteen tap of Bob's at gate-2 in the board's ``life`` (1: before the re-flash)."""
    return {
        "boot": boot, "seq": seq, "t": T0 + life * 10_000 + seq, "sync": 1,
        "up": life * 7 + seq * 1000, "kind": "tap", "reader": "canteen", "card": CARD_B,
        "result": "granted", "reason": "ok",
    }  # fmt: skip


def _canteen(seqs: range | list[int], life: int, boot: int = 1) -> Batch:
    doc = {"v": 1, "dev": "gate-2", "boot": boot, "events": [_meal(s, boot, life) for s in seqs]}
    got = decode(topic(PREFIX, "gate-2"), dumps(doc))
    assert isinstance(got, Batch), got
    return got


@pytest.fixture
def conn(database_url: str) -> Iterator[Any]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(sql).fetchall()]


@pytest.mark.usefixtures("write_path")
def test_reflashed_board_is_quarantined_and_first_life_kept(conn: Any, seed: Seed) -> None:
    first = write(conn, [_canteen(range(1, 6), life=1)])
    assert first.inserted == 5
    # erase-flash: boot.cnt is gone, the board starts again at boot 1, seq 1 (other times)
    again = write(conn, [_canteen(range(1, 4), life=2), _canteen(range(4, 9), life=2)])
    # acked (the board's journal drains), nothing of the second life's 1..5 stored over the first
    assert again.acks == [Ack("gate-2", 1, 1, 3), Ack("gate-2", 1, 4, 8)]
    assert (again.inserted, again.reused, again.duplicates) == (3, 5, 0)
    assert again.rejects[IDENTITY_REUSED] == 2 and again.quarantined == 2
    q = _rows(
        conn,
        "SELECT reason, device_id, boot, first_seq, last_seq, detail, payload FROM quarantine"
        " ORDER BY first_seq",
    )
    assert [r[:5] for r in q] == [
        (IDENTITY_REUSED, "gate-2", 1, 1, 3), (IDENTITY_REUSED, "gate-2", 1, 4, 5),
    ]  # fmt: skip
    assert "seq 1-3 already stored with other content" in q[0][5]
    # the whole payload is kept: nothing of the second life is lost
    assert b'"t":%d' % (T0 + 20_001) in bytes(q[0][6]) and bytes(q[1][6]).count(b'"seq"') == 5
    # one event per identity; seqs 1..5 are the first life's, 6..8 the second's
    events = _rows(
        conn,
        "SELECT seq, extract(epoch FROM occurred_at)::int8 FROM events WHERE device_id = 'gate-2'"
        " ORDER BY seq",
    )
    assert events == [(s, T0 + (10_000 if s <= 5 else 20_000) + s) for s in range(1, 9)]
    receipts = _rows(
        conn,
        "SELECT seq, extract(epoch FROM occurred_at)::int8 FROM meal_receipts ORDER BY seq",
    )
    assert receipts == events
    deliveries = _rows(
        conn,
        "SELECT seq, extract(epoch FROM occurred_at)::int8 FROM sw_deliveries ORDER BY seq",
    )
    assert deliveries == events


@pytest.mark.usefixtures("write_path")
def test_same_identity_same_time_other_card_is_not_a_silent_dedupe(conn: Any, seed: Seed) -> None:
    write(conn, [_batch(seqs=[1, 2])])
    res = write(conn, [_batch(seqs=[1, 2], card=CARD_B)])
    assert (res.inserted, res.duplicates, res.reused) == (0, 0, 2)
    assert _rows(conn, "SELECT reason, first_seq, last_seq FROM quarantine") == [
        (IDENTITY_REUSED, 1, 2)
    ]
    assert _rows(conn, "SELECT DISTINCT card_key FROM events") == [("0123456789abcdef",)]


@pytest.mark.usefixtures("write_path")
def test_two_lives_in_one_flush_store_the_first(conn: Any, seed: Seed) -> None:
    res = write(conn, [_canteen([1, 2], life=1), _canteen([2, 3], life=2)])
    assert (res.inserted, res.reused) == (3, 1)
    assert _rows(conn, "SELECT first_seq, last_seq FROM quarantine") == [(2, 2)]
    assert _rows(
        conn, "SELECT seq, extract(epoch FROM occurred_at)::int8 FROM events ORDER BY seq"
    ) == [(1, T0 + 10_001), (2, T0 + 10_002), (3, T0 + 20_003)]


@pytest.mark.usefixtures("write_path")
def test_byte_identical_retransmission_stays_a_silent_dedupe(conn: Any, seed: Seed) -> None:
    b = _canteen(range(1, 6), life=1)
    write(conn, [b])
    res = write(conn, [b, _canteen([5, 6], life=1)])
    assert (res.inserted, res.duplicates, res.reused, res.quarantined) == (1, 6, 0, 0)
    assert _rows(conn, "SELECT count(*) FROM quarantine") == [(0,)]
    assert _rows(conn, "SELECT count(*) FROM meal_receipts") == [(6,)]


# -- through the running ingest: the metric, the log and the ack --------------------------------


@pytest.fixture
def board(settings: Settings) -> Iterator[Board]:
    b = Board(settings.mqtt_host, settings.mqtt_port, settings.topic_prefix)
    yield b
    b.close()


def test_reused_identity_counted_by_the_metric_and_acked(
    settings: Settings, seed: Seed, board: Board
) -> None:
    p = settings.topic_prefix
    ing = Ingest(settings)
    ing.start()
    try:
        assert ing.wait_ready(10), "ingest did not subscribe"
        first = {"v": 1, "dev": "gate-2", "boot": 1, "events": [_meal(s, 1, 1) for s in (1, 2)]}
        board.publish(topic(p, "gate-2"), dumps(first))
        assert board.next_ack()[1]["last"] == 2
        second = {"v": 1, "dev": "gate-2", "boot": 1, "events": [_meal(s, 1, 2) for s in (1, 2)]}
        board.publish(topic(p, "gate-2"), dumps(second))
        _, ack = board.next_ack()
        assert (ack["boot"], ack["first"], ack["last"]) == (1, 1, 2)
        board.publish(topic(p, "gate-2"), dumps(first))  # a true retransmission: no alarm
        board.next_ack()
        m = ing.metrics
        assert m.value("qadam_ingest_identity_reused_total") == 2
        assert m.value("qadam_ingest_rejects_total", {"reason": IDENTITY_REUSED}) == 1
        assert m.value("qadam_ingest_duplicates_total") == 2
    finally:
        ing.stop()
