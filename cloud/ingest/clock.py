"""Clock correction (protocol.md "Clock"): a status with ``clock: {synced:1, t, up}`` gives the
reference pair of the board's current ``boot``; every event of that (device, boot) with sync 0
gets ``occurred_at_corrected = t_ref - (up_ref - up) / 1000`` (migration 0008). Events stored later
are corrected on insert by the ingest (:func:`clock_corrected_us` on the bulk path, the SQL function
of the same name in the insert statement)."""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def _uint(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def clock_ref(doc: dict[str, Any]) -> tuple[int, int, int] | None:
    """(boot, t_ref, up_ref) of a status whose clock is synced, else None."""
    clock = doc.get("clock")
    boot = doc.get("boot")
    if not isinstance(clock, dict) or clock.get("synced") != 1 or not _uint(boot):
        return None
    t, up = clock.get("t"), clock.get("up")
    if not _uint(t) or not _uint(up):
        return None
    assert isinstance(boot, int) and isinstance(t, int) and isinstance(up, int)
    return boot, t, up


_PG_EPOCH_S = 946_684_800.0  # 2000-01-01T00:00:00Z, PostgreSQL's epoch, in Unix seconds


def clock_corrected_us(t_ref: int, up_ref: int, up: int) -> int:
    """The SQL function ``clock_corrected`` (migration 0008) exactly, as PostgreSQL stores it:
    microseconds since 2000-01-01 UTC of ``to_timestamp(t_ref - (up_ref - up) / 1000.0)``.
    The numeric quotient is exact; PostgreSQL rounds it to a double, and to_timestamp takes
    ``rint((x - 946684800) * 1e6)``. Python's int division rounds correctly and ``round`` is
    rint, so this is the same number (a test compares both). Out of timestamptz's range, the
    database refuses it as it refuses the SQL function's result."""
    x = (t_ref * 1000 - (up_ref - up)) / 1000
    return round((x - _PG_EPOCH_S) * 1e6)


def apply_status_clock(conn: Conn, device: str, doc: dict[str, Any]) -> int:
    """Record the status's reference pair (if any) and correct that boot's unsynced events.
    Returns how many event rows changed. Idempotent: a heartbeat with the same pair changes
    nothing (and catches events whose insert raced the first status)."""
    ref = clock_ref(doc)
    if ref is None:
        return 0
    boot, t_ref, up_ref = ref
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO device_clock_refs (device_id, boot, t_ref, up_ref)"
            " SELECT id, %s, %s, %s FROM devices WHERE id = %s"
            " ON CONFLICT (device_id, boot) DO UPDATE SET t_ref = excluded.t_ref,"
            " up_ref = excluded.up_ref, updated_at = now()"
            " RETURNING device_id",
            (boot, t_ref, up_ref, device),
        ).fetchone()
        if row is None:
            return 0  # not a registered device
        cur = conn.execute(
            "UPDATE events SET occurred_at_corrected = clock_corrected(%s, %s, uptime_ms)"
            " WHERE device_id = %s AND boot = %s AND NOT clock_synced"
            " AND occurred_at_corrected IS DISTINCT FROM clock_corrected(%s, %s, uptime_ms)",
            (t_ref, up_ref, device, boot, t_ref, up_ref),
        )
        return cur.rowcount
