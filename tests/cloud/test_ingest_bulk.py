"""The bulk write path (D18): a big flush goes into events by COPY. It must store exactly what the
insert statement stores, and give way to the statement whenever it cannot be sure every event is
new. On both paths the derived rows (computed by the ingest, D21) must be what PostgreSQL computes
from the stored events."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cloud_helpers import CARD_A, CARD_B, NOTED_TAPS, T0, batch_doc, dumps, topic

from cloud.domain import registry
from cloud.ingest import writer
from cloud.ingest.decode import Batch, decode
from cloud.ingest.derive import TAPS_PER_NOTE
from cloud.ingest.writer import WriteResult, write

STRANGER = "00000000000000ff"  # nobody's card
PG_ADMIN_URL = os.environ.get("QADAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _seed(url: str) -> None:
    with psycopg.connect(url) as conn:
        registry.create_school(conn, "s1", "School 1", b"k" * 32)
        registry.create_school(conn, "s2", "School 2", b"q" * 32)
        registry.register_device(conn, "gate-1", "s1", "main entrance", "turnstile", "mfrc522")
        registry.register_device(conn, "till-1", "s1", "canteen", "canteen", "pn532")
        registry.register_device(conn, "gate-2", "s2", "entrance", "door", "mfrc522")
        alice = registry.add_person(conn, "s1", "student", "Alice", meal_category=2)
        bob = registry.add_person(conn, "s2", "staff", "Bob")
        registry.add_card(conn, alice, CARD_A)
        registry.add_card(conn, bob, CARD_B)
        conn.execute(
            "INSERT INTO dishes (school_id, name_kk, name_ru, price)"
            " VALUES ('s1', 'ас', 'суп', 300)"
        )
        # gate-1 boot 8 synced its clock: its unsynced events get a corrected time on insert
        conn.execute(
            "INSERT INTO device_clock_refs (device_id, boot, t_ref, up_ref) VALUES (%s, 8, %s, %s)",
            ("gate-1", T0 + 7200, 7_200_000),
        )


@pytest.fixture
def two_databases(db_template: str) -> Iterator[tuple[str, str]]:
    names = [f"qadam_t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        for n in names:
            admin.execute(f'CREATE DATABASE "{n}" TEMPLATE "{db_template}"')
    try:
        urls = (f"{base}/{names[0]}", f"{base}/{names[1]}")
        for u in urls:
            _seed(u)
        yield urls
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            for n in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')


def _flushes(rng: random.Random, t0: int = T0) -> list[list[Batch]]:
    """Flushes of mixed traffic: both schools, canteen taps with and without a valid dish,
    unknown cards, a card of the other school, denials, unsynced clocks, a retransmission."""
    seqs = {("gate-1", 7): 1, ("gate-1", 8): 1, ("till-1", 3): 1, ("gate-2", 1): 1}
    flushes: list[list[Batch]] = []
    for _ in range(6):
        flush = []
        for _ in range(rng.randint(3, 12)):
            dev, boot = rng.choice(list(seqs))
            n = rng.randint(1, 32)
            first = seqs[(dev, boot)]
            seqs[(dev, boot)] = first + n + rng.randint(0, 2)
            events = []
            for s in range(first, first + n):
                reader = "canteen" if dev == "till-1" else rng.choice(["in", "out"])
                ev: dict[str, Any] = {
                    "boot": boot, "seq": s, "t": t0 + rng.randint(0, 40 * 3600),
                    "sync": 0 if boot == 8 and rng.random() < 0.5 else 1, "up": 1000 * s,
                    "kind": "tap", "reader": reader,
                    "card": rng.choice([CARD_A, CARD_A, CARD_B, STRANGER]),
                    "result": rng.choice(["granted", "granted", "denied"]),
                    "reason": "ok",
                }  # fmt: skip
                if reader == "canteen":
                    ev["dish"] = rng.choice([1, 99, None])
                events.append(ev)
            doc = {"v": 1, "dev": dev, "boot": boot, "events": events}
            b = decode(topic("qadam", dev), dumps(doc))
            assert isinstance(b, Batch), b
            flush.append(b)
        flushes.append(flush)
    flushes.append(flushes[2][:2] + flushes[4])  # a replay that overlaps what is stored
    return flushes


_TABLES = {
    "events": "SELECT device_id, boot, seq, school_id, person_id, card_key, kind, reader, result,"
              " reason, board_time, clock_synced, uptime_ms, occurred_at, occurred_at_corrected"
              " FROM events ORDER BY 1, 2, 3",
    "attendance": "SELECT person_id, day, school_id, first_in, last_out, passages FROM attendance"
                  " ORDER BY 1, 2",
    "meal_receipts": "SELECT device_id, boot, seq, school_id, person_id, meal_category,"
                     " occurred_at, day, dish_id FROM meal_receipts ORDER BY 1, 2, 3",
    "outbox": "SELECT kind, idempotency_key, payload FROM outbox ORDER BY 2",
}  # fmt: skip


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(q).fetchall() for t, q in _TABLES.items()}


def _gate_1(seqs: range) -> Batch:
    b = decode(topic("qadam", "gate-1"), dumps(batch_doc(seqs=seqs)))
    assert isinstance(b, Batch), b
    return b


def _write(url: str, flush: list[Batch]) -> WriteResult:
    with psycopg.connect(url, autocommit=True) as conn:
        return write(conn, flush)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_path_stores_what_the_statement_stores(
    two_databases: tuple[str, str], monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    bulk_db, statement_db = two_databases
    paths = []
    for flush in _flushes(random.Random(seed)):
        monkeypatch.setattr(writer, "BULK_MIN", 1)
        a = _write(bulk_db, flush)
        monkeypatch.setattr(writer, "BULK_MIN", 10**9)
        b = _write(statement_db, flush)
        assert (a.inserted, a.duplicates, a.acks) == (b.inserted, b.duplicates, b.acks)
        assert not b.bulk
        paths.append(a.bulk)
    # fresh flushes went the bulk way; the one overlapping stored events gave way
    assert paths == [True] * 6 + [False]
    got, want = _dump(bulk_db), _dump(statement_db)
    assert got == want
    assert want["meal_receipts"] and want["outbox"] and want["attendance"]
    assert any(r[14] is not None for r in want["events"])  # clock corrections happened


def test_a_race_with_another_writer_falls_back_to_the_statement(
    two_databases: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = two_databases
    monkeypatch.setattr(writer, "BULK_MIN", 1)
    first, second = _gate_1(range(1, 11)), _gate_1(range(11, 21))
    assert _write(url, [first]).bulk
    # Another worker stored batch 1 between our check and our COPY: the check is blinded here,
    # so the COPY meets the key, its savepoint rolls back, and the statement dedupes.
    monkeypatch.setattr(
        writer,
        "_ANY_STORED",
        "SELECT 1 WHERE %s::text[] IS NULL AND %s::int8[] IS NULL"
        " AND %s::int8[] IS NULL AND %s::int8[] IS NULL",
    )
    r = _write(url, [first, second])
    assert (r.bulk, r.inserted, r.duplicates) == (False, 10, 10)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT seq) FROM events").fetchone() == (
            20,
            20,
        )
        notes = conn.execute("SELECT payload->'runs' FROM outbox ORDER BY id").fetchall()
    assert [n[0] for n in notes] == [[[1, 10]], [[11, 20]]]


def test_overlapping_batches_in_one_flush_take_the_statement(
    two_databases: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = two_databases
    monkeypatch.setattr(writer, "BULK_MIN", 1)
    r = _write(url, [_gate_1(range(1, 6)), _gate_1(range(4, 9))])
    assert (r.bulk, r.inserted, r.duplicates) == (False, 8, 2)


# What the derived tables must hold, computed by PostgreSQL from the stored events (the SQL the
# writer used before D21). Dishes are not in events; test_ingest_timeseries checks them.
_ORACLE = {
    "attendance": """
        SELECT e.person_id, (e.occurred_at AT TIME ZONE sc.timezone)::date, min(e.school_id),
               min(e.occurred_at) FILTER (WHERE e.reader = 'in'),
               max(e.occurred_at) FILTER (WHERE e.reader = 'out'), count(*)
        FROM events e JOIN schools sc ON sc.id = e.school_id
        WHERE e.result = 'granted' AND e.person_id IS NOT NULL AND e.reader IN ('in', 'out')
        GROUP BY 1, 2 ORDER BY 1, 2""",
    "meal_receipts": """
        SELECT e.device_id, e.boot, e.seq, e.school_id, e.person_id, p.meal_category,
               e.occurred_at, (e.occurred_at AT TIME ZONE sc.timezone)::date
        FROM events e JOIN schools sc ON sc.id = e.school_id
        LEFT JOIN people p ON p.id = e.person_id
        WHERE e.result = 'granted' AND e.reader = 'canteen' ORDER BY 1, 2, 3""",
    "notes": """
        SELECT device_id, boot, seq, school_id FROM events
        WHERE result = 'granted' AND person_id IS NOT NULL ORDER BY 1, 2, 3""",
}
_DERIVED = {
    "attendance": "SELECT person_id, day, school_id, first_in, last_out, passages FROM attendance"
                  " ORDER BY 1, 2",
    "meal_receipts": "SELECT device_id, boot, seq, school_id, person_id, meal_category,"
                     " occurred_at, day FROM meal_receipts ORDER BY 1, 2, 3",
    # each noted tap, from the notes' payloads, with the note's key
    "notes": f"""
        SELECT o.payload->>'device_id', (o.payload->>'boot')::int8, t.seq, o.payload->>'school_id'
        FROM {NOTED_TAPS} WHERE o.kind = 'parent_notification' ORDER BY 1, 2, 3""",
}  # fmt: skip


@pytest.mark.parametrize("path", ["bulk", "statement"])
@pytest.mark.parametrize(
    ("zones", "t0"),
    [
        (("Asia/Almaty", "Asia/Almaty"), T0),
        # a fall-back at local midnight, and a +05:45 zone, around that instant
        (("America/Asuncion", "Asia/Kathmandu"), 1_679_799_600 - 20 * 3600),
        # a 30-minute change of offset at half past the UTC hour
        (("Australia/Lord_Howe", "UTC+5"), 1_696_087_800 - 20 * 3600),
    ],
)
def test_derived_rows_are_what_sql_computes_from_the_events(
    two_databases: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    zones: tuple[str, str],
    t0: int,
) -> None:
    url, _ = two_databases
    with psycopg.connect(url) as conn:
        for school, zone in zip(("s1", "s2"), zones, strict=True):
            conn.execute("UPDATE schools SET timezone = %s WHERE id = %s", (zone, school))
    monkeypatch.setattr(writer, "BULK_MIN", 1 if path == "bulk" else 10**9)
    flushes = _flushes(random.Random(5), t0)
    for flush in flushes:
        _write(url, flush)
    with psycopg.connect(url) as conn:
        for table, sql in _ORACLE.items():
            assert conn.execute(_DERIVED[table]).fetchall() == conn.execute(sql).fetchall(), table
        assert conn.execute("SELECT count(*) FROM attendance").fetchone()[0] > 1
        notes = conn.execute(
            "SELECT idempotency_key, payload->>'device_id', payload->>'boot', payload->'runs'"
            " FROM outbox WHERE kind = 'parent_notification'"
        ).fetchall()
    # a note is one run of at most TAPS_PER_NOTE taps, keyed by its first, named by sorted
    # ranges that neither touch nor overlap
    assert notes
    for key, device, boot, runs in notes:
        assert key == f"taps:{device}:{boot}:{runs[0][0]}"
        assert all(lo <= hi for lo, hi in runs)
        assert all(a[1] + 1 < b[0] for a, b in zip(runs, runs[1:], strict=False))
        assert runs[0][0] // TAPS_PER_NOTE == runs[-1][1] // TAPS_PER_NOTE


@pytest.mark.parametrize("path", ["bulk", "statement"])
def test_one_identity_with_two_times_stores_the_first_and_quarantines_the_other(
    two_databases: tuple[str, str], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """A board that breaks the protocol (the same identity re-sent with another time, e.g. after
    a re-flash) does not get two rows any more (issue #13 item 7): the later one is quarantined
    as identity_reused, and the derived data comes from the stored row alone."""
    url, _ = two_databases
    monkeypatch.setattr(writer, "BULK_MIN", 1 if path == "bulk" else 10**9)
    first = decode(topic("qadam", "gate-1"), dumps(batch_doc(seqs=range(1, 4), reader="in")))
    again = decode(topic("qadam", "gate-1"),
                   dumps(batch_doc(seqs=range(2, 4), reader="in", t=T0 - 86_400)))  # fmt: skip
    assert isinstance(first, Batch) and isinstance(again, Batch)
    r = _write(url, [first, again])
    assert (r.bulk, r.inserted, r.duplicates, r.reused) == (False, 3, 0, 2)
    with psycopg.connect(url) as conn:
        for table, sql in _ORACLE.items():
            assert conn.execute(_DERIVED[table]).fetchall() == conn.execute(sql).fetchall(), table
        days = conn.execute("SELECT day, passages FROM attendance ORDER BY day").fetchall()
        reasons = conn.execute("SELECT reason, first_seq, last_seq FROM quarantine").fetchall()
    assert [n for _, n in days] == [3]
    assert reasons == [("identity_reused", 2, 3)]
