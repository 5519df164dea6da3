"""Migration 0002: partitioned events, derived rows in the ingest transaction, the outbox, and the
partition functions (native flavour here: TimescaleDB is not installable on these machines)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from cloud_helpers import CARD_A, CARD_B, NOTED_TAPS, T0, Seed, batch_doc, dumps, topic

from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import write

# every test here runs on both write paths (tests/cloud/conftest.py write_path)
pytestmark = pytest.mark.usefixtures("write_path")


def _batch(**kw: Any) -> Batch:
    got = decode(topic("qadam", kw.get("dev", "gate-1")), dumps(batch_doc(**kw)))
    assert isinstance(got, Batch), got
    return got


@pytest.fixture
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


def _one(conn: Any, sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def _partition_of(conn: Any, device: str, boot: int, seq: int) -> str:
    return str(
        _one(
            conn,
            "SELECT tableoid::regclass::text FROM events WHERE device_id=%s AND boot=%s AND seq=%s",
            device, boot, seq,
        )
    )  # fmt: skip


def test_storage_flavour_and_key(conn: Any) -> None:
    assert _one(conn, "SELECT flavour FROM event_storage") == "native"
    key = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'events'::regclass AND i.indisprimary"
    ).fetchall()
    assert {r[0] for r in key} == {"device_id", "boot", "seq", "occurred_at"}


def test_attendance_first_in_last_out_passages(conn: Any, seed: Seed) -> None:
    # T0 = 2025-10-09 08:53:20Z = 13:53:20 in Asia/Almaty (UTC+5)
    write(conn, [_batch(seqs=[1, 2], reader="in"), _batch(seqs=[3], reader="out")])
    write(conn, [_batch(seqs=[4], reader="out", t=T0 + 3600)])
    write(conn, [_batch(seqs=[5], reader="in", result="denied", reason="expired")])
    write(conn, [_batch(seqs=[6], card="aaaaaaaaaaaaaaaa")])  # unknown card: no person
    rows = conn.execute(
        "SELECT person_id, day, school_id, first_in, last_out, passages FROM attendance"
    ).fetchall()
    assert rows == [
        (
            seed.alice, date(2025, 10, 9), "s1",
            datetime.fromtimestamp(T0 + 1, UTC), datetime.fromtimestamp(T0 + 3600, UTC), 4,
        )
    ]  # fmt: skip


def test_retransmission_does_not_count_twice(conn: Any, seed: Seed) -> None:
    b = _batch(seqs=[1, 2, 3])
    write(conn, [b, b])
    r = write(conn, [b])
    assert (r.inserted, r.duplicates) == (0, 3)
    assert _one(conn, "SELECT passages FROM attendance") == 3
    assert _one(conn, "SELECT count(*) FROM outbox") == 1
    assert _one(conn, f"SELECT count(*) FROM {NOTED_TAPS}") == 3


def test_attendance_day_is_the_schools_local_day(conn: Any, seed: Seed) -> None:
    # 20:30Z on Oct 9 is 01:30 on Oct 10 in Almaty, but still Oct 9 in New York
    t = int(datetime(2025, 10, 9, 20, 30, tzinfo=UTC).timestamp())
    write(conn, [_batch(seqs=[1], t=t)])
    conn.execute("UPDATE schools SET timezone = 'America/New_York' WHERE id = 's1'")
    write(conn, [_batch(seqs=[2], t=t)])
    days = [r[0] for r in conn.execute("SELECT day FROM attendance ORDER BY day")]
    assert days == [date(2025, 10, 9), date(2025, 10, 10)]


def test_bad_time_zone_is_refused(conn: Any, seed: Seed) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE schools SET timezone = 'Mars/Olympus' WHERE id = 's1'")
    assert _one(conn, "SELECT timezone FROM schools WHERE id = 's1'") == "Asia/Almaty"


def test_meal_receipts_for_granted_canteen_taps(conn: Any, seed: Seed) -> None:
    conn.execute("UPDATE people SET meal_category = 2 WHERE id = %s", (seed.bob,))
    write(
        conn,
        [
            _batch(dev="gate-2", seqs=[1, 2], card=CARD_B, reader="canteen"),
            _batch(dev="gate-2", seqs=[3], card=CARD_B, reader="canteen", result="denied"),
            _batch(dev="gate-2", seqs=[4], card="aaaaaaaaaaaaaaaa", reader="canteen"),
            _batch(dev="gate-2", seqs=[5], card=CARD_B, reader="in"),
        ],
    )
    rows = conn.execute(
        "SELECT seq, school_id, person_id, meal_category, day FROM meal_receipts ORDER BY seq"
    ).fetchall()
    d = date(2025, 10, 9)
    assert rows == [
        (1, "s2", seed.bob, 2, d), (2, "s2", seed.bob, 2, d), (4, "s2", None, None, d),
    ]  # fmt: skip
    # canteen taps are not passages
    assert _one(conn, "SELECT passages FROM attendance WHERE person_id = %s", seed.bob) == 1


def test_outbox_notes_every_granted_tap_of_a_known_person_once(conn: Any, seed: Seed) -> None:
    write(conn, [_batch(seqs=[1, 2]), _batch(seqs=[3], result="denied")])
    write(conn, [_batch(seqs=[4], card="aaaaaaaaaaaaaaaa")])
    write(conn, [_batch(seqs=[5, 6]), _batch(dev="gate-2", seqs=[1], card=CARD_B)])
    rows = conn.execute(
        "SELECT kind, idempotency_key, payload, delivered_at, attempts FROM outbox ORDER BY id"
    ).fetchall()
    # one row per board boot and flush: the key is the run's first tap (new exactly once)
    assert [r[1] for r in rows] == ["taps:gate-1:7:1", "taps:gate-1:7:5", "taps:gate-2:7:1"]
    kind, _, payload, delivered, attempts = rows[0]
    assert (kind, delivered, attempts) == ("parent_notification", None, 0)
    assert (payload["device_id"], payload["boot"], payload["school_id"]) == ("gate-1", 7, "s1")
    assert payload["runs"] == [[1, 2]]  # the worker reads person, reader and time from events
    assert rows[1][2]["runs"] == [[5, 6]]
    assert rows[2][2]["runs"] == [[1, 1]] and rows[2][2]["school_id"] == "s2"


def test_a_long_run_of_taps_is_split_into_bounded_notes(conn: Any, seed: Seed) -> None:
    from cloud.ingest.derive import TAPS_PER_NOTE

    n = TAPS_PER_NOTE * 2 + 10
    write(conn, [_batch(seqs=range(1, 33))] + [
        _batch(seqs=range(s, min(s + 32, n + 1))) for s in range(33, n + 1, 32)
    ])  # fmt: skip
    sizes = [
        r[0] for r in conn.execute(
            f"SELECT count(*) FROM {NOTED_TAPS} GROUP BY o.idempotency_key ORDER BY 1")
    ]  # fmt: skip
    assert sum(sizes) == n and max(sizes) <= TAPS_PER_NOTE and len(sizes) == 3


def test_derived_rows_roll_back_with_the_events(conn: Any, seed: Seed) -> None:
    conn.execute(
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'boom'; END$$;"
        " CREATE TRIGGER boom BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION boom()"
    )
    with pytest.raises(psycopg.errors.RaiseException):
        write(conn, [_batch(seqs=[1, 2])])
    for table in ("events", "attendance", "outbox", "meal_receipts"):
        assert _one(conn, f"SELECT count(*) FROM {table}") == 0, table
    conn.execute("DROP TRIGGER boom ON outbox")
    assert write(conn, [_batch(seqs=[1, 2])]).inserted == 2  # the staging table survived


def test_identity_columns_are_immutable(conn: Any, seed: Seed) -> None:
    write(conn, [_batch(seqs=[1])])
    with pytest.raises(psycopg.errors.CheckViolation, match="immutable"):
        conn.execute("UPDATE events SET occurred_at = occurred_at + interval '1 hour'")
    conn.execute("UPDATE events SET reason = 'ok2'")  # other columns may change
    assert _one(conn, "SELECT reason FROM events") == "ok2"


def test_partitions_created_ahead_and_late_rows_moved(conn: Any, seed: Seed) -> None:
    write(conn, [_batch(seqs=[1])])  # Oct 2025: no partition yet -> DEFAULT
    assert _partition_of(conn, "gate-1", 7, 1) == "events_default"
    n = _one(
        conn,
        "SELECT ensure_event_partitions('2025-09-15Z', '2025-11-01Z')",
    )
    assert n == 3  # 2025-09, 2025-10, 2025-11
    assert _partition_of(conn, "gate-1", 7, 1) == "events_p202510"
    assert _one(conn, "SELECT ensure_event_partitions('2025-09-15Z', '2025-11-01Z')") == 0
    # dedupe still works across the move
    assert write(conn, [_batch(seqs=[1])]).duplicates == 1
    assert _one(conn, "SELECT count(*) FROM events") == 1


def test_retention_drops_whole_old_partitions_only(conn: Any, seed: Seed) -> None:
    conn.execute("SELECT ensure_event_partitions('2025-09-01Z', '2025-11-30Z')")
    write(conn, [_batch(seqs=[1], t=int(datetime(2025, 9, 20, tzinfo=UTC).timestamp()))])
    write(conn, [_batch(seqs=[2])])  # 2025-10-09
    write(conn, [_batch(seqs=[3], t=int(datetime(2001, 1, 1, tzinfo=UTC).timestamp()))])
    # Oct 9 is inside October: only September (ends Oct 1) is old enough
    assert _one(conn, "SELECT drop_event_partitions_older_than('2025-10-09Z')") == 1
    assert sorted(r[0] for r in conn.execute("SELECT seq FROM events")) == [2, 3]
    assert _one(conn, "SELECT to_regclass('events_p202509')") is None
    assert _one(conn, "SELECT to_regclass('events_default')") == "events_default"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT ensure_event_partitions('2025-10-01Z', '2025-09-01Z')",
        "SELECT ensure_event_partitions(NULL, '2025-09-01Z')",
        "SELECT ensure_event_partitions('1990-01-01Z', '2030-01-01Z')",
        "SELECT drop_event_partitions_older_than(NULL)",
    ],
)
def test_partition_functions_refuse_bad_arguments(conn: Any, sql: str) -> None:
    before = _one(conn, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        conn.execute(sql)
    after = _one(conn, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")
    assert after == before


def test_migration_keeps_existing_events(empty_database_url: str, tmp_path: Any) -> None:
    """0001 data survives 0002: rows are moved into the partitioned table."""
    from cloud.db.migrate import MIGRATIONS_DIR, apply

    first = tmp_path / "m1"
    first.mkdir()
    (first / "0001_init.sql").write_bytes((MIGRATIONS_DIR / "0001_init.sql").read_bytes())
    apply(empty_database_url, first)
    with psycopg.connect(empty_database_url, autocommit=True) as c:
        c.execute("INSERT INTO schools (id, name, site_key) VALUES ('s1', 'S', 'k')")
        c.execute(
            "INSERT INTO events (device_id, boot, seq, school_id, card_key, kind, reader, result,"
            " reason, board_time, clock_synced, uptime_ms, occurred_at) VALUES"
            " ('gate-1', 1, 1, 's1', %s, 'tap', 'in', 'granted', 'ok', to_timestamp(%s), true,"
            " 5, to_timestamp(%s))",
            (CARD_A, T0, T0),
        )
    assert apply(empty_database_url)[0] == "0002_timeseries.sql"
    with psycopg.connect(empty_database_url, autocommit=True) as c:
        assert _one(c, "SELECT count(*) FROM events") == 1
        assert _partition_of(c, "gate-1", 1, 1) == "events_p202510"


def test_concurrent_partition_upkeep(database_url: str) -> None:
    """Several workers ensuring partitions at once: each month is created exactly once."""
    import threading

    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def run() -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as c:
                barrier.wait()
                sql = "SELECT ensure_event_partitions('2030-01-01Z', '2030-12-31Z')"
                results.append(_one(c, sql))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert sorted(results) == [0, 0, 12]


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM people WHERE id = %(alice)s",
        "UPDATE people SET id = DEFAULT WHERE id = %(alice)s",
        "TRUNCATE people CASCADE",
        "DELETE FROM schools WHERE id = 's1'",
        "UPDATE schools SET id = 's9' WHERE id = 's1'",
        "TRUNCATE schools CASCADE",
    ],
)
def test_people_and_schools_that_events_refer_to_stay(conn: Any, seed: Seed, sql: str) -> None:
    # events carry no foreign keys (D18): the references hold because these rows never go
    write(conn, [_batch(seqs=[1, 2])])
    before = conn.execute("SELECT school_id, person_id FROM events ORDER BY seq").fetchall()
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute(sql, {"alice": seed.alice})
    assert conn.execute("SELECT school_id, person_id FROM events ORDER BY seq").fetchall() == before
    assert before == [("s1", seed.alice)] * 2
    orphans = _one(
        conn,
        "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM schools s"
        " WHERE s.id = e.school_id) OR (e.person_id IS NOT NULL AND NOT EXISTS"
        " (SELECT 1 FROM people p WHERE p.id = e.person_id))",
    )
    assert orphans == 0


def test_a_person_with_no_events_is_not_deleted_either(conn: Any, seed: Seed) -> None:
    pid = _one(conn, "INSERT INTO people (school_id, kind, full_name) VALUES ('s1', 'staff', 'X')"
               " RETURNING id")  # fmt: skip
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("DELETE FROM people WHERE id = %s", (pid,))
    conn.execute("UPDATE people SET full_name = 'Y' WHERE id = %s", (pid,))  # other edits go on
    assert _one(conn, "SELECT full_name FROM people WHERE id = %s", pid) == "Y"
