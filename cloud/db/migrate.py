"""Apply ``cloud/db/migrations/*.sql`` in name order, each exactly once.

Each file runs in its own transaction together with its ``schema_migrations`` row, under a
transaction-scoped advisory lock, so several processes starting at once are safe: the second
waits, then sees the file recorded and skips it.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from cloud.db.conn import connect

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Arbitrary constant identifying "qadam schema migration" among advisory locks.
LOCK_KEY = 0x7161_6461_6D00  # "qadam\0"

log = logging.getLogger("qadam.migrate")


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[Path]:
    return sorted(p for p in directory.glob("*.sql") if p.is_file())


def apply(database_url: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied by this call (empty if none)."""
    applied: list[str] = []
    with connect(database_url, application_name="qadam-migrate") as conn:
        for path in migration_files(directory):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " name text PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                done = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE name = %s", (path.name,)
                ).fetchone()
                if done:
                    continue
                # bytes query without parameters: sent as a simple query, so a file may hold
                # many statements.
                conn.execute(path.read_bytes())
                conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
            log.info("migration applied name=%s", path.name)
            applied.append(path.name)
    return applied


def apply_on_start(database_url: str) -> list[str]:
    """What every service entry point runs before it starts (``python -m cloud.ingest``,
    ``python -m cloud.api``, ``qadam ingest``, ``qadam serve``): bring the schema up to date, so a
    service started against an empty database creates it, and one started by an older deployment
    is never left on an older schema."""
    applied = apply(database_url)
    log.info("schema up to date applied=%d", len(applied))
    return applied


def main() -> int:
    from cloud.startup import check_database, load_settings, run_entry

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    def migrate() -> int:
        url = load_settings().database_url
        check_database(url)  # a bad or unreachable URL: one line and exit 2/3 (cloud/startup.py)
        names = apply(url)
        print("applied: " + (", ".join(names) if names else "nothing (up to date)"))
        return 0

    return run_entry(migrate)


if __name__ == "__main__":
    sys.exit(main())
