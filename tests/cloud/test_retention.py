"""Retention of events (issue #18 "Retention", D29-B) on a real PostgreSQL: months past the
policy archived (binary COPY, SHA-256, rows, read back), then detached and dropped; the derived
rows the reports read stay; a month restored from its file; the current and future months never
touched; a bad or stale archive never followed by a drop."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cloud_helpers import CARD_B, Seed, batch_doc, dumps, topic

from cloud.ingest.decode import Batch, decode
from cloud.ingest.writer import write
from cloud.reports import build
from cloud.retention import archive, job, months, pgcopy, plan
from cloud.retention.archive import RetentionError
from cloud.retention.restore import restore
from cloud.settings import Settings

MARCH, APRIL = date(2021, 3, 1), date(2021, 4, 1)


def _ts(y: int, m: int, d: int, h: int = 8) -> int:
    return int(datetime(y, m, d, h, tzinfo=UTC).timestamp())


def _batch(
    seqs: list[int], t: int, boot: int = 7, reader: str = "in", dev: str = "gate-1", **over: Any
) -> Batch:
    doc = batch_doc(dev=dev, boot=boot, seqs=seqs, **over)
    for i, ev in enumerate(doc["events"]):
        ev["t"] = t + i
        ev["reader"] = reader
    got = decode(topic("qadam", dev), dumps(doc))
    assert isinstance(got, Batch), got
    return got


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
def old_events(conn: psycopg.Connection[Any], seed: Seed) -> dict[str, int]:
    """March 2021 in its own partition (3 taps on two days), April 2021 only in the DEFAULT
    partition (2 taps: no partition was ever made for it), and 2 taps this month."""
    conn.execute("SELECT ensure_event_partitions('2021-03-01Z', '2021-03-01Z')")
    write(conn, [_batch([1, 2], _ts(2021, 3, 10))])
    write(conn, [_batch([3], _ts(2021, 3, 11), reader="out")])
    write(conn, [_batch([4, 5], _ts(2021, 4, 5))])
    now = int(datetime.now(UTC).timestamp())
    write(conn, [_batch([1, 2], now - 60, boot=8)])
    return {"march": 3, "april": 2, "now": 2}


def _settings(database_url: str, tmp_path: Path, **over: Any) -> Settings:
    return Settings(
        database_url=database_url, retention_archive_dir=str(tmp_path / "archive"), **over
    )


def _one(conn: Any, query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _partitions(conn: Any) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass"
    ).fetchall()
    return {str(r[0]) for r in rows}


def _month_rows(conn: Any, month: date) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT * FROM events WHERE occurred_at >= %s AND occurred_at < %s"
        " ORDER BY device_id, boot, seq",
        (months.start(month), months.end(month)),
    ).fetchall()


def test_policy_lists_old_months_only(conn: Any, old_events: dict[str, int]) -> None:
    due = plan.due(conn, 37)
    assert [(m.month, m.action, m.attached) for m in due] == [
        (MARCH, "archive", True),
        (APRIL, "archive", False),  # its rows sit in the DEFAULT partition
    ]
    assert due[1].rows_estimate == 2


def test_current_and_future_months_are_never_due(conn: Any, old_events: dict[str, int]) -> None:
    # counted from April 2021 with the shortest policy, only March is older than "now"
    assert [m.month for m in plan.due(conn, 1, current=APRIL)] == [MARCH]
    conn.execute(
        "SELECT ensure_event_partitions(now() + interval '2 months', now() + interval '2 months')"
    )
    # a policy that keeps "one month" from a month two years ahead still keeps this month
    ahead = months.add(plan.current_month(conn), 24)
    listed = {m.month for m in plan.due(conn, 1, current=ahead)}
    assert plan.current_month(conn) not in listed
    assert not any(m > plan.current_month(conn) for m in listed)
    with pytest.raises(ValueError):
        months.first_kept(APRIL, 0)
    # and the steps themselves refuse the current month
    with pytest.raises(RetentionError):
        archive.archive(conn, plan.current_month(conn), Path("/nonexistent"), 5)
    with pytest.raises(RetentionError):
        archive.drop(conn, plan.current_month(conn), Path("/nonexistent"), 5)


def test_run_archives_checks_and_drops_old_months(
    conn: Any,
    old_events: dict[str, int],
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    march_rows = _month_rows(conn, MARCH)
    attendance_before = conn.execute("SELECT * FROM attendance ORDER BY day").fetchall()
    assert len(attendance_before) == 4  # 10 and 11 March, 5 April, today
    caplog.set_level(logging.INFO, logger="qadam.retention")

    out = job.run_once(_settings(database_url, tmp_path))

    assert (out.archived, out.dropped, out.failed) == (["2021-03", "2021-04"],) * 2 + ([],)
    assert "events_p202103" not in _partitions(conn)
    assert "events_p202104" not in _partitions(conn)
    assert _one(conn, "SELECT count(*) FROM events") == old_events["now"]
    assert _one(conn, "SELECT count(*) FROM events_default") == 0
    # the reports' rows stay: attendance of the dropped months is untouched
    assert conn.execute("SELECT * FROM attendance ORDER BY day").fetchall() == attendance_before
    manifest = conn.execute(
        "SELECT month, file_name, row_count, byte_count, sha256, state FROM event_archives"
        " ORDER BY month"
    ).fetchall()
    assert [(m, n, r, s) for m, n, r, _, _, s in manifest] == [
        (MARCH, "events-2021-03.pgcopy", 3, "dropped"),
        (APRIL, "events-2021-04.pgcopy", 2, "dropped"),
    ]
    for _, name, rows, size, sha, _ in manifest:
        f = tmp_path / "archive" / name
        assert hashlib.sha256(f.read_bytes()).hexdigest() == sha
        assert f.stat().st_size == size
        assert pgcopy.read_back(f, len(archive.event_columns(conn))).rows == rows
    assert not list((tmp_path / "archive").glob("*.partial"))
    steps = [(r.getMessage(), getattr(r, "fields", {}).get("month")) for r in caplog.records]
    assert ("retention archived", "2021-03") in steps
    assert ("retention dropped", "2021-04") in steps
    # run again: nothing left to do
    again = job.run_once(_settings(database_url, tmp_path))
    assert (again.archived, again.dropped, again.failed) == ([], [], [])
    # the March rows are the file's rows: restore and compare
    restored = restore(conn, MARCH, tmp_path / "archive", 30, 5)
    assert restored == 3
    assert _month_rows(conn, MARCH) == march_rows


def test_the_monthly_reports_of_a_dropped_month_are_unchanged(
    conn: Any, old_events: dict[str, int], seed: Seed, database_url: str, tmp_path: Path
) -> None:
    # Bob's free lunch at the canteen of school s2 in March 2021: a receipt and its roll-up
    conn.execute("UPDATE people SET meal_category = 1 WHERE id = %s", (seed.bob,))
    write(conn, [_batch([1], _ts(2021, 3, 10, 7), dev="gate-2", card=CARD_B, reader="canteen")])
    assert _one(conn, "SELECT count(*) FROM meal_receipts WHERE school_id = 's2'") == 1

    def reports() -> list[Any]:
        return [
            build.attendance(conn, "s1", MARCH),
            build.crosscheck(conn, "s1", MARCH),
            build.meals(conn, "s2", MARCH),
            build.attendance(conn, "s2", MARCH),
        ]

    before = reports()
    assert len(before[2]["lines"]) == 1  # Bob's meal is in the meal report
    assert before[0] != build.attendance(conn, "s1", APRIL)  # March's has Alice's two days
    assert job.run_once(_settings(database_url, tmp_path)).dropped == ["2021-03", "2021-04"]
    assert _one(conn, "SELECT count(*) FROM events WHERE occurred_at < '2021-05-01Z'") == 0
    assert reports() == before


def test_restore_holds_the_month_then_archives_it_again(
    conn: Any, old_events: dict[str, int], database_url: str, tmp_path: Path
) -> None:
    s = _settings(database_url, tmp_path)
    job.run_once(s)
    # a refused restore changes nothing: a month never archived, a malformed state
    with pytest.raises(RetentionError, match="never archived"):
        restore(conn, date(2020, 1, 1), tmp_path / "archive", 30, 5)
    assert restore(conn, APRIL, tmp_path / "archive", 30, 5) == 2
    assert "events_p202104" in _partitions(conn)
    with pytest.raises(RetentionError, match="online"):
        restore(conn, APRIL, tmp_path / "archive", 30, 5)
    state, hold = conn.execute(
        "SELECT state, hold_until > now() + interval '29 days' FROM event_archives"
        " WHERE month = %s",
        (APRIL,),
    ).fetchone()
    assert (state, hold) == ("restored", True)
    held = job.run_once(s)
    assert held.dropped == [] and "events_p202104" in _partitions(conn)
    conn.execute("UPDATE event_archives SET hold_until = now() - interval '1 second'")
    after = job.run_once(s)
    assert (after.archived, after.dropped) == (["2021-04"], ["2021-04"])
    assert "events_p202104" not in _partitions(conn)


def test_a_damaged_or_missing_archive_is_never_followed_by_a_drop(
    conn: Any, old_events: dict[str, int], database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    a = archive.archive(conn, MARCH, directory, 5)
    data = bytearray(a.path.read_bytes())
    data[-10] ^= 0xFF  # one flipped bit inside the last record
    a.path.write_bytes(bytes(data))
    with pytest.raises(RetentionError, match="read back"):
        archive.drop(conn, MARCH, directory, 5)
    a.path.write_bytes(bytes(data[:-5]))  # cut short
    with pytest.raises(RetentionError, match="read back .* bytes"):
        archive.drop(conn, MARCH, directory, 5)
    a.path.unlink()
    with pytest.raises(RetentionError, match="cannot be read back"):
        archive.drop(conn, MARCH, directory, 5)
    assert "events_p202103" in _partitions(conn)
    assert len(_month_rows(conn, MARCH)) == 3
    # the job says so and goes on with the next month (April archives and drops)
    out = job.run_once(_settings(database_url, tmp_path))
    assert out.failed == ["2021-03"] and out.dropped == ["2021-04"]
    assert "events_p202103" in _partitions(conn)


def test_rows_changed_after_the_archive_are_archived_again(
    conn: Any, old_events: dict[str, int], database_url: str, tmp_path: Path
) -> None:
    directory = tmp_path / "archive"
    first = archive.archive(conn, MARCH, directory, 5)
    write(conn, [_batch([6], _ts(2021, 3, 20))])  # a board back after three years
    assert archive.drop(conn, MARCH, directory, 5) == -1  # the partition's hash differs
    assert "events_p202103" in _partitions(conn)
    assert _one(conn, "SELECT verified_at FROM event_archives WHERE month = %s", MARCH) is None
    out = job.run_once(_settings(database_url, tmp_path))
    assert "2021-03" in out.archived and "2021-03" in out.dropped
    rows, sha = conn.execute(
        "SELECT row_count, sha256 FROM event_archives WHERE month = %s", (MARCH,)
    ).fetchone()
    assert rows == 4 and sha != first.sha256


def test_without_an_archive_directory_nothing_is_dropped(
    conn: Any, old_events: dict[str, int], database_url: str
) -> None:
    out = job.run_once(Settings(database_url=database_url))
    assert out.skipped and "directory" in out.skipped
    assert {"events_p202103"} <= _partitions(conn)
    assert _one(conn, "SELECT count(*) FROM events") == sum(old_events.values())
    assert _one(conn, "SELECT count(*) FROM event_archives") == 0


def test_one_run_at_a_time(
    conn: Any, old_events: dict[str, int], database_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url, autocommit=True) as other:
        assert job.locked(other)
        out = job.run_once(_settings(database_url, tmp_path))
    assert out.skipped == "another retention run holds the lock"
    assert "events_p202103" in _partitions(conn)


def test_month_argument_is_checked() -> None:
    assert months.parse("2023-09") == date(2023, 9, 1)
    for bad in ("2023-13", "2023-9", "23-09", "2023-09-01", "", "1900-01"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            months.parse(bad)


def test_the_archive_reader_refuses_what_is_not_one_whole_copy(tmp_path: Path) -> None:
    import struct

    head = pgcopy.SIGNATURE + struct.pack("!iI", 0, 0)
    record = struct.pack("!h", 2) + struct.pack("!i", 3) + b"abc" + struct.pack("!i", -1)
    trailer = struct.pack("!h", -1)
    f = tmp_path / "a.pgcopy"
    f.write_bytes(head + record * 3 + trailer)
    got = pgcopy.read_back(f, 2)
    assert (got.rows, got.size) == (3, len(head) + 3 * len(record) + 2)
    assert got.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    for bad, says in (
        (head + record + trailer + b"\x00", "after the end-of-data trailer"),
        (head + record, "ends inside a record"),
        (head + record[:-2], "ends inside a record"),
        (b"PGCOPY\n\xff\r\n\x00", "inside the header"),
        (b"COPY" + head[4:] + trailer, "bad signature"),
        (head + struct.pack("!h", 3) + record[2:] + trailer, "3 fields, expected 2"),
        (head + struct.pack("!h", 2) + struct.pack("!i", -7) + trailer, "bad field length"),
    ):
        f.write_bytes(bad)
        with pytest.raises(pgcopy.BadArchive, match=says):
            pgcopy.read_back(f, 2)
