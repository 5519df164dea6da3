"""Queueing a school's day for its e-journal: one outbox row per (school, day, revision). The
first push of a day is revision 1; pushing the same day again (after corrections) makes the
next revision, a new key, so the e-journal stores the newer day; it dedupes retries of one
revision on the key."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cloud.domain.errors import NotFound
from cloud.outbox.contract import Conn

KIND = "ejournal_day"


def connect_school(conn: Conn, school_id: str, external_id: str, starts_at: str = "08:30") -> None:
    """Connect (or update) a school: its id at the e-journal and its start of the day."""
    if conn.execute("SELECT 1 FROM schools WHERE id = %s", (school_id,)).fetchone() is None:
        raise NotFound(f"school {school_id!r} not found")
    conn.execute(
        "INSERT INTO ejournal_schools (school_id, external_id, starts_at) VALUES (%s, %s, %s)"
        " ON CONFLICT (school_id) DO UPDATE SET external_id = EXCLUDED.external_id,"
        " starts_at = EXCLUDED.starts_at",
        (school_id, external_id, starts_at),
    )


def enqueue(conn: Conn, school_id: str, day: date, again: bool = False) -> str | None:
    """Queue the day; the key, or None when it was queued before and ``again`` is not set."""
    connected = conn.execute(
        "SELECT 1 FROM ejournal_schools WHERE school_id = %s", (school_id,)
    ).fetchone()
    if connected is None:
        raise NotFound(f"school {school_id!r} is not connected to an e-journal")
    prefix = f"ejournal:{school_id}:{day.isoformat()}:"
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (prefix,))  # revisions in turn
    row = conn.execute(
        "SELECT count(*) FROM outbox WHERE kind = %s AND idempotency_key LIKE %s",
        (KIND, prefix.replace("_", r"\_") + "%"),
    ).fetchone()
    done = int(row[0]) if row else 0
    if done and not again:
        return None
    key = f"{prefix}{done + 1}"
    payload: dict[str, Any] = {"school_id": school_id, "day": day.isoformat()}
    try:
        conn.execute(
            "INSERT INTO outbox (kind, idempotency_key, payload) VALUES (%s, %s, %s)",
            (KIND, key, Jsonb(payload)),
        )
    except psycopg.errors.UniqueViolation:  # pragma: no cover - the lock makes it one at a time
        return None
    return key


def enqueue_all(conn: Conn, day: date) -> list[str]:
    """The daily hook: every connected school's day, once."""
    schools = [str(r[0]) for r in conn.execute("SELECT school_id FROM ejournal_schools")]
    return [k for s in schools if (k := enqueue(conn, s, day)) is not None]
