"""What the policy says about each month of events that is not online-and-kept: read from the
partitions attached to ``events``, the DEFAULT partition's stray old rows and the manifest
(``event_archives``, migration 0041). Used by the job and by ``qadam retention --dry-run``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from cloud.retention import months

# archive: write the month's file; drop: its checked file exists, take it offline;
# hold: restored on request, kept until hold_until; late: rows came for a dropped month
Action = Literal["archive", "drop", "hold", "late"]


@dataclass
class Month:
    month: date
    action: Action
    attached: bool  # a partition events_pYYYYMM is attached
    rows_estimate: int  # the planner's estimate for a partition, exact for DEFAULT rows
    bytes_online: int
    state: str | None  # the manifest's state, None: never archived
    hold_until: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "month": f"{self.month:%Y-%m}",
            "action": self.action,
            "partition": months.partition(self.month),
            "attached": self.attached,
            "rows_estimate": self.rows_estimate,
            "bytes_online": self.bytes_online,
            "state": self.state,
            "hold_until": self.hold_until.isoformat() if self.hold_until else None,
        }


def current_month(conn: Any) -> date:
    """The database's current UTC month: the partitions' clock, not this machine's."""
    row = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()
    return months.first_of(row[0])


def storage_flavour(conn: Any) -> str:
    row = conn.execute("SELECT flavour FROM event_storage").fetchone()
    return str(row[0])


def attached(conn: Any) -> dict[date, tuple[int, int]]:
    """month -> (estimated rows, bytes) of every monthly partition attached to events."""
    rows = conn.execute(
        "SELECT c.relname, greatest(c.reltuples, 0)::bigint, pg_total_relation_size(c.oid)"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'events'::regclass"
    ).fetchall()
    found = {}
    for name, estimate, size in rows:
        m = months.of_partition(str(name))
        if m is not None:
            found[m] = (int(estimate), int(size))
    return found


def in_default(conn: Any, before: date) -> dict[date, int]:
    """month -> rows of that month sitting in the DEFAULT partition (no partition for it)."""
    rows = conn.execute(
        "SELECT date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date, count(*)"
        " FROM events_default WHERE occurred_at < %s GROUP BY 1",
        (months.start(before),),
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def manifest(conn: Any) -> dict[date, dict[str, Any]]:
    cur = conn.execute(
        "SELECT month, state, verified_at, hold_until, now() < coalesce(hold_until, now())"
        " FROM event_archives"
    )
    return {
        r[0]: {"state": r[1], "verified_at": r[2], "hold_until": r[3], "held": bool(r[4])}
        for r in cur.fetchall()
    }


def due(conn: Any, keep_months: int, current: date | None = None) -> list[Month]:
    """Every month before the policy's first kept month that still needs a step, oldest first.
    The current month and later are never in the list, whatever ``keep_months`` says."""
    now = current_month(conn)
    current = months.first_of(current or now)
    first_kept = min(months.first_kept(current, keep_months), now)
    online = attached(conn)
    strays = in_default(conn, first_kept)
    known = manifest(conn)
    out: list[Month] = []
    for m in sorted(set(online) | set(strays)):
        if m >= first_kept:
            continue
        estimate, size = online.get(m, (0, 0))
        entry = known.get(m)
        state = entry["state"] if entry else None
        action: Action
        if entry and state == "dropped":
            action = "late"  # the partition is gone, yet rows for the month came in again
        elif entry and state == "restored" and entry["held"]:
            action = "hold"
        elif (
            entry
            and state == "archived"
            and entry["verified_at"] is not None
            and m in online
            and m not in strays
        ):
            action = "drop"
        else:
            action = "archive"
        out.append(
            Month(
                m,
                action,
                m in online,
                estimate + strays.get(m, 0),
                size,
                state,
                entry["hold_until"] if entry else None,
            )
        )
    return out
