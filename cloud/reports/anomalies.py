"""The meal report's cross-check anomalies, acknowledged one by one before approval (D28-F).

The stored (frozen) meal report holds the anomalies the administrator signs off: meals for pupils
not on site, and eligible pupils present but not fed (cloud/reports/build.py ``crosscheck``).
Each is named by (check, person, day) and acknowledged separately, with who and when
(``report_anomaly_acks``, migration 0034, audited). Approval then goes through the API's own
rule (service.approve: anomalies need ``acknowledge_anomalies``), which the console passes only
when none is left open.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import psycopg

from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Conflict, NotFound
from cloud.reports import service

Conn = psycopg.Connection[Any]
Check = Literal["fed_not_present", "present_not_fed"]
CHECKS: tuple[Check, ...] = ("fed_not_present", "present_not_fed")
_NAMED = ("person_id", "name", "class", "date")  # the rest of an anomaly's row is its detail


@dataclass
class Anomaly:
    check: Check
    person_id: int
    name: str
    klass: str
    day: date
    detail: dict[str, Any]  # meals and first meal, or category and first entry
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.acknowledged_at is None


def of_report(conn: Conn, school_id: str, month: date) -> list[Anomaly]:
    """The stored meal report's anomalies with their acknowledgements (none: not generated)."""
    stored = service.get(conn, school_id, month, "meals")
    if stored is None:
        return []
    check = stored[1].get("crosscheck", {})
    acks = {
        (str(r[0]), int(r[1]), r[2]): (r[3], r[4])
        for r in conn.execute(
            "SELECT a.check_kind, a.person_id, a.day, coalesce(u.email, ''), a.acknowledged_at"
            " FROM report_anomaly_acks a LEFT JOIN users u ON u.id = a.acknowledged_by"
            " WHERE a.school_id = %s AND a.month = %s",
            (school_id, month),
        ).fetchall()
    }
    out: list[Anomaly] = []
    for kind in CHECKS:
        for row in check.get(kind, []):
            day = date.fromisoformat(row["date"])
            detail = {k: v for k, v in row.items() if k not in _NAMED}
            who, when = acks.get((kind, int(row["person_id"]), day), (None, None))
            out.append(Anomaly(kind, int(row["person_id"]), str(row["name"]), str(row["class"]),
                               day, detail, who, when))  # fmt: skip
    return out


def open_count(conn: Conn, school_id: str, month: date) -> int:
    return sum(1 for a in of_report(conn, school_id, month) if a.open)


def acknowledge(
    conn: Conn, actor: Principal, school_id: str, month: date, check: Check, person_id: int,
    day: date,
) -> bool:  # fmt: skip
    """Acknowledge one anomaly of the stored draft. False when it was acknowledged already;
    NotFound when the report has no such anomaly; Conflict once the report is approved."""
    stored = service.get(conn, school_id, month, "meals")
    if stored is None:
        raise NotFound(f"no meal report of {school_id} for {month:%Y-%m}: generate it first")
    if stored[0]["status"] == "approved":
        raise Conflict("the report is approved already")
    if not any(a.check == check and a.person_id == person_id and a.day == day
               for a in of_report(conn, school_id, month)):  # fmt: skip
        raise NotFound("the report has no such anomaly")
    row = conn.execute(
        "INSERT INTO report_anomaly_acks (school_id, month, check_kind, person_id, day,"
        " acknowledged_by) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (school_id, month, check, person_id, day, actor.user_id),
    ).fetchone()
    if row is None:
        return False
    after = {"school_id": school_id, "month": f"{month:%Y-%m}", "check": check,
             "person_id": person_id, "day": day.isoformat()}  # fmt: skip
    store.audit(conn, actor, "create", "report_anomaly_acks",
                f"{school_id}:{month:%Y-%m}:{check}:{person_id}:{day}", None, after,
                school_id)  # fmt: skip
    return True


def approve(conn: Conn, actor: Principal, school_id: str, month: date, kind: service.Kind) -> Any:
    """The API's approval (service.approve), acknowledging the anomalies only when every one was
    acknowledged here; otherwise the API's Conflict stands."""
    done = kind != "meals" or open_count(conn, school_id, month) == 0
    return service.approve(conn, actor, school_id, month, kind, acknowledge_anomalies=done)
