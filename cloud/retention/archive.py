"""The two steps that take a month offline, each its own transaction, so a process killed
between them (or inside one) leaves a state the next run finishes:

1. ``archive``: the month's partition is copied (binary COPY, one snapshot) into
   ``events-YYYY-MM.pgcopy.partial``, flushed to disk, renamed, read back and parsed (SHA-256,
   row count, every record's field count) and only then recorded in ``event_archives`` as
   ``archived``. A kill before the record leaves at most a file the next run writes again.
2. ``drop``: the file is hashed again (it may have gone or changed since: the same SHA-256 and
   size are the bytes that were parsed whole in step 1); then, holding a SHARE lock on
   the partition (late inserts into that month wait, nothing else does), the partition is
   copied once more into the hash only: the same SHA-256 proves no row changed since the
   archive. Only then is it detached and dropped, and the record set to ``dropped``, in the same
   transaction. A different hash marks the archive stale (``verified_at`` NULL) and the next run
   archives the month again.

Lock waits are bounded (``lock_timeout``): DETACH takes an ACCESS EXCLUSIVE lock on ``events``,
and a request queued behind a long query would stall the ingest behind it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from psycopg import IsolationLevel, sql

from cloud.retention import months, pgcopy


class RetentionError(RuntimeError):
    """A step refused or failed; the month stays online."""


@dataclass(frozen=True)
class Archived:
    month: date
    path: Path
    rows: int
    size: int
    sha256: str


def event_columns(conn: Any) -> list[str]:
    """The events table's columns in table order (the COPY column list of every archive)."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'events'::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _copy_out(part: str, columns: list[str]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) TO STDOUT (FORMAT binary)").format(
        sql.Identifier(part), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )


def _limits(conn: Any, lock_timeout_s: float) -> None:
    conn.execute(
        sql.SQL("SET LOCAL lock_timeout = {}").format(
            sql.Literal(f"{int(lock_timeout_s * 1000)}ms")
        )
    )
    # one scan order from block 0, so two copies of an unchanged partition are byte-identical
    conn.execute("SET LOCAL synchronize_seqscans = off")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def archive(conn: Any, month: date, directory: Path, lock_timeout_s: float) -> Archived:
    """Step 1 for one month (``conn`` in autocommit mode; the step is its own transaction)."""
    if month >= months.first_of(_today(conn)):
        raise RetentionError(f"{month:%Y-%m} is the current month or later: never archived")
    row = conn.execute("SELECT state FROM event_archives WHERE month = %s", (month,)).fetchone()
    if row and row[0] == "dropped":  # the file is the only copy: never written over
        raise RetentionError(f"{month:%Y-%m} is already archived and dropped")
    part = months.partition(month)
    # rows of the month still in the DEFAULT partition get their own partition first
    conn.execute(
        "SELECT ensure_event_partitions(%s, %s)", (months.start(month), months.start(month))
    )
    columns = event_columns(conn)
    path = directory / months.file_name(month)
    partial = path.with_name(path.name + ".partial")
    directory.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    conn.isolation_level = IsolationLevel.REPEATABLE_READ  # count and copy: one snapshot
    try:
        with conn.transaction():
            _limits(conn, lock_timeout_s)
            count = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(part))
            ).fetchone()[0]
            with partial.open("wb") as f, conn.cursor() as cur:
                with cur.copy(_copy_out(part, columns)) as copy:
                    for data in copy:
                        f.write(data)
                        h.update(data)
                        size += len(data)
                f.flush()
                os.fsync(f.fileno())
    finally:
        conn.isolation_level = None
    os.replace(partial, path)
    _fsync_dir(directory)
    try:
        back = _check_file(path, len(columns), h.hexdigest(), int(count), size)
    except RetentionError:
        path.unlink(missing_ok=True)  # not recorded: the next run writes it again
        raise
    conn.execute(
        "INSERT INTO event_archives (month, partition, file_name, columns, row_count, byte_count,"
        " sha256, state, verified_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 'archived', now())"
        " ON CONFLICT (month) DO UPDATE SET partition = EXCLUDED.partition,"
        " file_name = EXCLUDED.file_name, columns = EXCLUDED.columns,"
        " row_count = EXCLUDED.row_count, byte_count = EXCLUDED.byte_count,"
        " sha256 = EXCLUDED.sha256, state = 'archived', archived_at = now(),"
        " verified_at = now(), dropped_at = NULL, hold_until = NULL"
        " WHERE event_archives.state <> 'dropped'",
        (month, part, path.name, columns, back.rows, back.size, back.sha256),
    )
    return Archived(month, path, back.rows, back.size, back.sha256)


def _today(conn: Any) -> date:
    row = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()
    return row[0]  # type: ignore[no-any-return]


def _check_file(path: Path, columns: int, sha256: str, rows: int, size: int) -> pgcopy.Digest:
    """The file as written must read back whole, with the expected hash, size and rows."""
    try:
        back = pgcopy.read_back(path, columns)
    except (OSError, pgcopy.BadArchive) as e:
        raise RetentionError(f"{path.name}: cannot be read back: {e}") from e
    if (back.sha256, back.rows, back.size) != (sha256, rows, size):
        raise RetentionError(
            f"{path.name}: read back {back.rows} rows, {back.size} bytes, sha256 {back.sha256};"
            f" expected {rows} rows, {size} bytes, sha256 {sha256}"
        )
    return back


def check_recorded(path: Path, sha256: str, size: int) -> None:
    """A file parsed whole when it was archived is the same file if its bytes hash the same:
    read back for the hash and size only (the parse is the slow part, bench/retention.py)."""
    try:
        got = pgcopy.file_digest(path)
    except OSError as e:
        raise RetentionError(f"{path.name}: cannot be read back: {e}") from e
    if got != (sha256, size):
        raise RetentionError(
            f"{path.name}: read back {got[1]} bytes, sha256 {got[0]}; the archive recorded"
            f" {size} bytes, sha256 {sha256}"
        )


def drop(conn: Any, month: date, directory: Path, lock_timeout_s: float) -> int:
    """Step 2 for one month whose archive is recorded and checked. Returns the rows dropped."""
    if month >= months.first_of(_today(conn)):
        raise RetentionError(f"{month:%Y-%m} is the current month or later: never dropped")
    row = conn.execute(
        "SELECT state, verified_at, file_name, columns, row_count, byte_count, sha256"
        " FROM event_archives WHERE month = %s",
        (month,),
    ).fetchone()
    if row is None or row[0] != "archived" or row[1] is None:
        raise RetentionError(f"{month:%Y-%m} has no checked archive: not dropped")
    _state, _verified, name, columns, rows, size, sha256 = row
    path = directory / name
    check_recorded(path, sha256, size)  # still there, still the file that was parsed
    part = months.partition(month)
    if columns != event_columns(conn):
        raise RetentionError(f"{month:%Y-%m}: the events columns changed since the archive")
    with conn.transaction():
        _limits(conn, lock_timeout_s)
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(sql.Identifier(part)))
        h = hashlib.sha256()
        with conn.cursor() as cur, cur.copy(_copy_out(part, columns)) as copy:
            for data in copy:
                h.update(data)
        if h.hexdigest() != sha256:
            conn.execute("UPDATE event_archives SET verified_at = NULL WHERE month = %s", (month,))
            return -1
        conn.execute(sql.SQL("ALTER TABLE events DETACH PARTITION {}").format(sql.Identifier(part)))
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(part)))
        conn.execute(
            "UPDATE event_archives SET state = 'dropped', dropped_at = now() WHERE month = %s",
            (month,),
        )
    return int(rows)
