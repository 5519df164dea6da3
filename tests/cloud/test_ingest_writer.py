"""The writer: one transaction, dedupe on (device, boot, seq), quarantine, acks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from cloud_helpers import CARD_A, CARD_B, T0, Seed, batch_doc, dumps, topic

from cloud.ingest.decode import Batch, Reject, decode
from cloud.ingest.writer import Ack, write

PREFIX = "qadam"


# every test here runs on both write paths (tests/cloud/conftest.py write_path)
pytestmark = pytest.mark.usefixtures("write_path")


def _batch(**kw: Any) -> Batch:
    dev = kw.get("dev", "gate-1")
    got = decode(topic(PREFIX, dev), dumps(batch_doc(**kw)))
    assert isinstance(got, Batch), got
    return got


@pytest.fixture
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _events(conn: Any) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT device_id, boot, seq, school_id, person_id, card_key, reader, result, reason,"
        " board_time, occurred_at, clock_synced, uptime_ms FROM events"
        " ORDER BY device_id, boot, seq"
    ).fetchall()


def test_stores_rows_and_acks_each_batch(conn: Any, seed: Seed) -> None:
    b1 = _batch(seqs=range(1, 4))
    b2 = _batch(seqs=range(4, 6), sync=0)
    res = write(conn, [b1, b2])
    assert res.acks == [Ack("gate-1", 7, 1, 3), Ack("gate-1", 7, 4, 5)]
    assert (res.inserted, res.duplicates, res.quarantined) == (5, 0, 0)
    rows = _events(conn)
    assert [(r[0], r[1], r[2]) for r in rows] == [("gate-1", 7, s) for s in range(1, 6)]
    first = rows[0]
    assert first[3] == "s1" and first[5] == CARD_A and first[6:9] == ("in", "granted", "ok")
    assert first[9] == datetime.fromtimestamp(T0 + 1, UTC) == first[10]
    assert first[11] is True and first[12] == 1000
    assert rows[4][11] is False


def test_same_batch_twice_stores_once_and_acks_both(conn: Any, seed: Seed) -> None:
    b = _batch(seqs=range(10, 13))
    r1 = write(conn, [b])
    r2 = write(conn, [b])
    assert r1.acks == r2.acks == [Ack("gate-1", 7, 10, 12)]
    assert (r1.inserted, r2.inserted, r2.duplicates) == (3, 0, 3)
    # and within one flush
    r3 = write(conn, [_batch(seqs=[20, 21]), _batch(seqs=[20, 21])])
    assert r3.acks == [Ack("gate-1", 7, 20, 21)] * 2 and r3.inserted == 2
    assert len(_events(conn)) == 5


def test_same_seq_in_another_boot_or_device_is_a_different_event(conn: Any, seed: Seed) -> None:
    write(
        conn, [_batch(boot=7, seqs=[1]), _batch(boot=8, seqs=[1]), _batch(dev="gate-2", seqs=[1])]
    )
    assert [(r[0], r[1], r[2]) for r in _events(conn)] == [
        ("gate-1", 7, 1), ("gate-1", 8, 1), ("gate-2", 7, 1),
    ]  # fmt: skip


def test_unknown_device_is_quarantined_and_acked(conn: Any, seed: Seed) -> None:
    b = _batch(dev="intruder-1", seqs=[3, 4])
    res = write(conn, [b, _batch(seqs=[1])])
    assert res.acks == [Ack("intruder-1", 7, 3, 4), Ack("gate-1", 7, 1, 1)]
    assert res.quarantined == 1 and res.inserted == 1
    q = conn.execute(
        "SELECT topic, payload, reason, device_id, boot, first_seq, last_seq FROM quarantine"
    ).fetchall()
    assert q == [(b.topic, b.payload, "unknown_device", "intruder-1", 7, 3, 4)]
    assert [r[0] for r in _events(conn)] == ["gate-1"]


def test_person_resolution(conn: Any, seed: Seed) -> None:
    unknown = "aaaaaaaaaaaaaaaa"
    write(conn, [_batch(seqs=[1], card=CARD_A), _batch(seqs=[2], card=unknown)])
    # Bob's card belongs to school 2: tapped at school 1's device it resolves to nobody
    write(conn, [_batch(seqs=[3], card=CARD_B), _batch(dev="gate-2", seqs=[1], card=CARD_B)])
    people = {(r[0], r[2]): r[4] for r in _events(conn)}
    assert people == {
        ("gate-1", 1): seed.alice,
        ("gate-1", 2): None,
        ("gate-1", 3): None,
        ("gate-2", 1): seed.bob,
    }


def test_revoked_card_still_names_its_owner(conn: Any, seed: Seed) -> None:
    conn.execute("UPDATE cards SET revoked_at = now() WHERE card_key = %s", (CARD_A,))
    write(conn, [_batch(seqs=[1], card=CARD_A, result="denied", reason="unknown_card")])
    assert _events(conn)[0][4] == seed.alice


def test_rejects_go_to_quarantine_acked_when_range_known(conn: Any, seed: Seed) -> None:
    bad_event = decode(topic(PREFIX), dumps(batch_doc(seqs=[5, 6], reader="roof")))
    garbage = decode(topic(PREFIX), b"\xff\x00not json")
    assert isinstance(bad_event, Reject) and isinstance(garbage, Reject)
    res = write(conn, [bad_event, garbage])
    assert res.acks == [Ack("gate-1", 7, 5, 6)]
    rows = conn.execute(
        "SELECT reason, payload, device_id, boot, first_seq, last_seq FROM quarantine ORDER BY id"
    ).fetchall()
    assert rows == [
        ("bad_event", bad_event.payload, "gate-1", 7, 5, 6),
        ("not_utf8", b"\xff\x00not json", "gate-1", None, None, None),
    ]
    assert _events(conn) == []


def test_quarantine_survives_hostile_topic_text(conn: Any, seed: Seed) -> None:
    rej = Reject("bad_topic", topic="a\x00b\udc80", payload=b"x", detail="d\x00")
    assert write(conn, [rej]).acks == []
    row = conn.execute("SELECT topic, detail FROM quarantine").fetchone()
    assert "\x00" not in row[0] and "\x00" not in row[1]


def test_refuses_open_transaction(database_url: str, seed: Seed) -> None:
    with psycopg.connect(database_url) as c:
        c.execute("SELECT 1")  # opens a transaction (autocommit off)
        with pytest.raises(RuntimeError):
            write(c, [_batch(seqs=[1])])


def test_ack_wire_format() -> None:
    a = Ack("gate-1", 7, 12, 40)
    assert a.topic("qadam") == "qadam/v1/dev/gate-1/ack"
    assert a.payload() == b'{"v":1,"boot":7,"first":12,"last":40}'


def test_the_identification_method_is_stored_with_the_event(conn: Any, seed: Seed) -> None:
    # D29-J: "qr"/"pin" when not by a card; a card tap and an old board's event carry none
    qr = _batch(seqs=range(1, 3), method="qr")
    pin = _batch(seqs=range(3, 4), method="pin")
    card = _batch(seqs=range(4, 5))
    odd = _batch(seqs=range(5, 6), method="face")  # unknown: None, the event still stored
    res = write(conn, [qr, pin, card, odd])
    assert res.inserted == 5
    got = conn.execute("SELECT seq, method FROM events ORDER BY seq").fetchall()
    assert got == [(1, "qr"), (2, "qr"), (3, "pin"), (4, None), (5, None)]
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE events SET method = 'face' WHERE seq = 4")
