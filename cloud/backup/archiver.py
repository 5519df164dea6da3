"""The server's side of WAL archiving (pg_stat_archiver): a failing archive_command shows only
there and in the server's log, while the archive itself just stops growing (D29-A)."""

from __future__ import annotations

from datetime import datetime

import psycopg

from cloud.backup.walarchive import BackupError


def check_archiver(conninfo: str) -> str:
    """One line on the archiver; BackupError when archiving is off or its last attempt failed."""
    try:
        with psycopg.connect(conninfo, connect_timeout=5) as conn:
            mode = conn.execute("SHOW archive_mode").fetchone()
            row = conn.execute(
                "SELECT archived_count, last_archived_wal, last_archived_time,"
                " failed_count, last_failed_wal, last_failed_time FROM pg_stat_archiver"
            ).fetchone()
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()
        raise BackupError(
            f"cannot ask the server about archiving ({first[0] if first else exc}); "
            "give --database CONNINFO, or --no-server"
        ) from exc
    assert mode is not None and row is not None
    if mode[0] == "off":
        raise BackupError("the server has archive_mode = off: no WAL is archived (D29-A)")
    archived, last_wal, last_at, failed, failed_wal, failed_at = row
    failed_at_: datetime | None = failed_at
    if failed_at_ is not None and (last_at is None or failed_at_ > last_at):
        raise BackupError(
            f"WAL archiving is failing: {failed_wal} could not be archived (last try "
            f"{failed_at_.isoformat(timespec='seconds')}, {failed} failures so far); the "
            "server's log has archive-wal.sh's reason, and pg_wal grows until it is fixed"
        )
    when = last_at.isoformat(timespec="seconds") if last_at else "never"
    return f"server archiver: {archived} archived, last {last_wal or '-'} at {when}"
