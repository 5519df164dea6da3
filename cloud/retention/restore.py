"""``qadam retention restore YYYY-MM``: one archived month back online, in one transaction.

The file is read back first (its SHA-256 and size as recorded); the rows are loaded with binary
COPY into a new table shaped like ``events``, counted, joined by any rows of the month that came
in later (sitting in the DEFAULT partition), and the table is attached as the month's partition.
The month is then held online for ``retention_restore_hold_days`` before the job archives it
again (its archive file is written anew then: the same rows)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from psycopg import sql

from cloud.retention import months
from cloud.retention.archive import RetentionError, _limits, check_recorded, event_columns
from cloud.retention.pgcopy import CHUNK


def restore(conn: Any, month: date, directory: Path, hold_days: int, lock_timeout_s: float) -> int:
    """Load the month back; returns the rows restored. Refuses a month not archived and
    dropped, or whose file fails its check; nothing changes then."""
    row = conn.execute(
        "SELECT state, file_name, columns, row_count, byte_count, sha256"
        " FROM event_archives WHERE month = %s",
        (month,),
    ).fetchone()
    if row is None:
        raise RetentionError(f"{month:%Y-%m} was never archived")
    state, name, columns, rows, size, sha256 = row
    if state != "dropped":
        raise RetentionError(f"{month:%Y-%m} is online ({state}): nothing to restore")
    path = directory / name
    check_recorded(path, sha256, size)  # COPY FROM parses it; the count is checked below
    missing = sorted(set(columns) - set(event_columns(conn)))
    if missing:
        raise RetentionError(f"{month:%Y-%m}: events has no column(s) {', '.join(missing)} now")
    part = months.partition(month)
    lo, hi = months.start(month), months.end(month)
    with conn.transaction():
        _limits(conn, lock_timeout_s)
        if conn.execute("SELECT to_regclass(%s)", (part,)).fetchone()[0] is not None:
            raise RetentionError(f"a table {part} exists already")
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            ).format(sql.Identifier(part))
        )
        copy_in = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(part), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
        )
        with conn.cursor() as cur, cur.copy(copy_in) as copy, path.open("rb") as f:
            while data := f.read(CHUNK):
                copy.write(data)
        loaded = conn.execute(
            sql.SQL(
                "SELECT count(*), count(*) FILTER (WHERE occurred_at < %s"
                " OR occurred_at >= %s) FROM {}"
            ).format(sql.Identifier(part)),
            (lo, hi),
        ).fetchone()
        if loaded[0] != rows or loaded[1]:
            raise RetentionError(
                f"{path.name}: loaded {loaded[0]} rows ({loaded[1]} outside"
                f" {month:%Y-%m}); the archive says {rows}"
            )
        conn.execute(
            sql.SQL(
                "WITH moved AS (DELETE FROM events_default WHERE occurred_at >= %s"
                " AND occurred_at < %s RETURNING *) INSERT INTO {} SELECT * FROM"
                " moved"
            ).format(sql.Identifier(part)),
            (lo, hi),
        )
        conn.execute(
            sql.SQL("ALTER TABLE events ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(part), sql.Literal(lo), sql.Literal(hi)
            )
        )
        conn.execute(
            "UPDATE event_archives SET state = 'restored', restored_at = now(),"
            " hold_until = now() + make_interval(days => %s) WHERE month = %s",
            (hold_days, month),
        )
    return int(rows)
