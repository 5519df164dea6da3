"""Where a school's monthly reports stand: the reminder before the 5th (a banner on the console's
Reports and Today pages for school admins) and the district's roll-up of report states (D28-F).

The month due is the one before the school's local date; it is due by DEADLINE_DAY of the
current month (service.DEADLINE_DAY, "ready before the 5th"). The scheduler's e-mail-ish
reminder (service.tick, an outbox row from QADAM_REPORTS_REMINDER_DAY) is separate: the banner
is shown from the 1st, to whoever opens the console, until both reports are approved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg

from cloud.reports import anomalies, build, service

Conn = psycopg.Connection[Any]


@dataclass
class Due:
    kind: str  # meals | attendance
    month: date
    deadline: date
    status: str  # not generated | draft
    overdue: bool


def local_day(conn: Conn, school_id: str) -> date:
    row = conn.execute(
        "SELECT (now() AT TIME ZONE timezone)::date FROM schools WHERE id = %s", (school_id,)
    ).fetchone()
    assert row is not None, "the caller checked the school exists"
    return row[0]  # type: ignore[no-any-return]


def statuses(conn: Conn, school_ids: list[str], month: date) -> dict[tuple[str, str], str]:
    """(school, kind) -> draft | approved, for the reports that exist."""
    rows = conn.execute(
        "SELECT school_id, kind, status FROM reports WHERE school_id = ANY(%s) AND month = %s",
        (school_ids, month),
    ).fetchall()
    return {(str(r[0]), str(r[1])): str(r[2]) for r in rows}


def due(conn: Conn, school_id: str, today: date | None = None) -> list[Due]:
    """The previous month's reports not approved yet, as of ``today`` (default: the school's
    local date)."""
    today = today or local_day(conn, school_id)
    month = build.prev_month(today.replace(day=1))
    deadline = today.replace(day=service.DEADLINE_DAY)
    have = statuses(conn, [school_id], month)
    return [
        Due(kind, month, deadline, have.get((school_id, kind), "not generated"), today > deadline)
        for kind in service.KINDS
        if have.get((school_id, kind)) != "approved"
    ]


@dataclass
class SchoolState:
    """One row of the district's roll-up of a month's reports."""

    id: str
    name: str
    meals: str  # not generated | draft | approved
    attendance: str
    anomalies: int  # of the stored meal report
    open_anomalies: int  # of those, not acknowledged yet


def school_states(conn: Conn, schools: list[tuple[str, str]], month: date) -> list[SchoolState]:
    ids = [s for s, _ in schools]
    have = statuses(conn, ids, month)
    counts = {
        str(r[0]): int(r[1])
        for r in conn.execute(
            "SELECT school_id, coalesce((summary->>'anomalies')::int, 0) FROM reports"
            " WHERE school_id = ANY(%s) AND month = %s AND kind = 'meals'",
            (ids, month),
        ).fetchall()
    }
    out = []
    for sid, name in schools:
        meals = have.get((sid, "meals"), "not generated")
        found = counts.get(sid, 0)
        # an approved report has nothing open; a draft's anomalies are matched to their acks
        left = anomalies.open_count(conn, sid, month) if meals == "draft" and found else 0
        out.append(SchoolState(sid, name, meals, have.get((sid, "attendance"), "not generated"),
                               found, left))  # fmt: skip
    return out
