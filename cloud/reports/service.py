"""Stored reports: one row per (school, month, kind), draft -> approved (docs/reports.md).

``tick`` is the scheduler's step (cloud/workers/reports.py): on and after the 1st (school local
date, DB clock) it generates the previous month's missing reports, and from the reminder day on
it enqueues one 'report_reminder' outbox row per school-month that is still not approved.
Everything is idempotent: run it as often as you like, from as many workers as you like.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from cloud.auth.principal import Principal
from cloud.domain import store
from cloud.domain.errors import Conflict, NotFound
from cloud.reports import build

Conn = psycopg.Connection[Any]
Kind = Literal["meals", "attendance"]
KINDS: tuple[Kind, ...] = ("meals", "attendance")
DEADLINE_DAY = 5  # "ready before the 5th of each month"
TICK_LOCK = 0x7161_6461_6D07  # "qadam" 07: one scheduler step at a time

_META = (
    "r.id, r.school_id, to_char(r.month, 'YYYY-MM'), r.kind, r.status, r.summary,"
    " r.generated_at, r.generated_by, r.approved_at, r.approved_by, u.email"
)
_META_KEYS = (
    "id",
    "school_id",
    "month",
    "kind",
    "status",
    "summary",
    "generated_at",
    "generated_by",
    "approved_at",
    "approved_by",
    "approved_by_name",
)


def _meta(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(_META_KEYS, row, strict=True))


def content(conn: Conn, school_id: str, month: date, kind: Kind) -> dict[str, Any]:
    if kind == "meals":
        return build.meals(conn, school_id, month)
    return build.attendance(conn, school_id, month)


def summary_of(data: dict[str, Any]) -> dict[str, Any]:
    if data["kind"] == "meals":
        x = data["crosscheck"]
        return {
            **data["total"],
            "unknown_card_receipts": data["unknown_card_receipts"],
            "fed_not_present": len(x["fed_not_present"]),
            "present_not_fed": len(x["present_not_fed"]),
            "anomalies": x["anomalies"],
        }
    return dict(data["total"])


def get(conn: Conn, school_id: str, month: date, kind: Kind) -> tuple[dict[str, Any], Any] | None:
    """(meta, frozen content) of a stored report, or None."""
    row = conn.execute(
        f"SELECT {_META}, r.data FROM reports r LEFT JOIN users u ON u.id = r.approved_by"
        " WHERE r.school_id = %s AND r.month = %s AND r.kind = %s",
        (school_id, month, kind),
    ).fetchone()
    if row is None:
        return None
    return _meta(row[:-1]), row[-1]


def read(conn: Conn, school_id: str, month: date, kind: Kind) -> tuple[dict[str, Any] | None, Any]:
    """(meta, content): the stored report's frozen content, else a live preview (meta None)
    computed without touching the rollup. The caller has checked the school's scope."""
    stored = get(conn, school_id, month, kind)
    if stored is not None:
        return stored
    if kind == "meals":
        return None, build.meals(conn, school_id, month, refresh=False)
    return None, build.attendance(conn, school_id, month)


def list_reports(
    conn: Conn,
    schools: list[str] | None,
    month: date | None,
    kind: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> tuple[int, list[dict[str, Any]]]:
    where: list[str] = ["true"]
    params: list[Any] = []
    if schools is not None:
        where.append("r.school_id = ANY(%s)")
        params.append(schools)
    for col, val in (("r.month", month), ("r.kind", kind), ("r.status", status)):
        if val is not None:
            where.append(f"{col} = %s")
            params.append(val)
    cond = " AND ".join(where)
    total = conn.execute(f"SELECT count(*) FROM reports r WHERE {cond}", params).fetchone()
    rows = conn.execute(
        f"SELECT {_META} FROM reports r LEFT JOIN users u ON u.id = r.approved_by WHERE {cond}"
        " ORDER BY r.month DESC, r.school_id, r.kind LIMIT %s OFFSET %s",
        [*params, limit, offset],
    ).fetchall()
    return (int(total[0]) if total else 0), [_meta(r) for r in rows]


def generate(
    conn: Conn, school_id: str, month: date, kind: Kind, actor: Principal | None
) -> dict[str, Any]:
    """(Re)generate a report. A draft is replaced; an approved report is frozen (Conflict)."""
    existing = get(conn, school_id, month, kind)
    if existing is not None and existing[0]["status"] == "approved":
        raise Conflict(f"the {kind} report of {school_id} for {month:%Y-%m} is already approved")
    data = content(conn, school_id, month, kind)
    who = actor.user_id if actor is not None else None
    row = conn.execute(
        "INSERT INTO reports (school_id, month, kind, summary, data, generated_by)"
        " VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (school_id, month, kind) DO UPDATE"
        "   SET summary = EXCLUDED.summary, data = EXCLUDED.data, generated_at = now(),"
        "       generated_by = EXCLUDED.generated_by"
        "   WHERE reports.status = 'draft'"
        " RETURNING id",
        (school_id, month, kind, Jsonb(summary_of(data)), Jsonb(data), who),
    ).fetchone()
    if row is None:
        raise Conflict(f"the {kind} report of {school_id} for {month:%Y-%m} is already approved")
    if actor is not None:
        after = {"school_id": school_id, "month": f"{month:%Y-%m}", "kind": kind,
                 "status": "draft"}  # fmt: skip
        store.audit(conn, actor, "create" if existing is None else "update", "reports",
                    row[0], None, after, school_id)  # fmt: skip
    found = get(conn, school_id, month, kind)
    assert found is not None
    return found[0]


def approve(
    conn: Conn,
    actor: Principal,
    school_id: str,
    month: date,
    kind: Kind,
    acknowledge_anomalies: bool,
) -> dict[str, Any]:
    """Sign off a generated report. A meal report with cross-check anomalies needs
    ``acknowledge_anomalies`` (the administrator has looked at them). Approving twice is a no-op."""
    row = conn.execute(
        "SELECT id, status, summary FROM reports WHERE school_id = %s AND month = %s"
        " AND kind = %s FOR UPDATE",
        (school_id, month, kind),
    ).fetchone()
    if row is None:
        raise NotFound(f"no {kind} report of {school_id} for {month:%Y-%m}: generate it first")
    if row[1] == "draft":
        anomalies = int(row[2].get("anomalies", 0))
        if anomalies and not acknowledge_anomalies:
            raise Conflict(
                f"the cross-check found {anomalies} anomalies; review them and approve with"
                " acknowledge_anomalies=true"
            )
        conn.execute(
            "UPDATE reports SET status = 'approved', approved_at = now(), approved_by = %s"
            " WHERE id = %s",
            (actor.user_id, row[0]),
        )
        after = {"status": "approved", "acknowledged_anomalies": anomalies}
        store.audit(conn, actor, "update", "reports", row[0], {"status": "draft"}, after,
                    school_id)  # fmt: skip
    found = get(conn, school_id, month, kind)
    assert found is not None
    return found[0]


def tick(conn: Conn, at: datetime | None = None, reminder_day: int = 4) -> dict[str, list[str]]:
    """One scheduler step at ``at`` (default: the database's now()). Returns what it did."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (TICK_LOCK,))
    row = conn.execute("SELECT coalesce(%s::timestamptz, now())", (at,)).fetchone()
    assert row is not None
    now = row[0]
    schools = conn.execute(
        "SELECT id, (%s::timestamptz AT TIME ZONE timezone)::date FROM schools ORDER BY id",
        (now,),
    ).fetchall()
    done: dict[str, list[str]] = {"generated": [], "reminders": []}
    for school_id, local_day in schools:
        month = build.prev_month(local_day.replace(day=1))
        for kind in KINDS:
            exists = conn.execute(
                "SELECT 1 FROM reports WHERE school_id = %s AND month = %s AND kind = %s",
                (school_id, month, kind),
            ).fetchone()
            if exists is None:
                generate(conn, school_id, month, kind, None)
                done["generated"].append(f"{school_id}:{month:%Y-%m}:{kind}")
        if local_day.day >= reminder_day and _remind(conn, school_id, month, local_day):
            done["reminders"].append(f"{school_id}:{month:%Y-%m}")
    return done


def _remind(conn: Conn, school_id: str, month: date, local_day: date) -> bool:
    pending = [
        str(r[0])
        for r in conn.execute(
            "SELECT kind FROM reports WHERE school_id = %s AND month = %s AND status = 'draft'"
            " ORDER BY kind",
            (school_id, month),
        ).fetchall()
    ]
    if not pending:
        return False
    admins = conn.execute(
        "SELECT id, email FROM users WHERE role = 'school_admin' AND school_id = %s AND active"
        " ORDER BY id",
        (school_id,),
    ).fetchall()
    deadline = date(local_day.year, local_day.month, DEADLINE_DAY)
    payload = {
        "school_id": school_id,
        "month": f"{month:%Y-%m}",
        "pending": pending,
        "deadline": deadline.isoformat(),
        "recipients": [{"user_id": a[0], "email": a[1]} for a in admins],
        "message": f"Monthly reports for {month:%Y-%m} are not approved yet ({', '.join(pending)});"
        f" they are due before {deadline.isoformat()}.",
    }
    ins = conn.execute(
        "INSERT INTO outbox (kind, idempotency_key, payload) VALUES ('report_reminder', %s, %s)"
        " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        (f"report_reminder:{school_id}:{month:%Y-%m}", Jsonb(payload)),
    ).fetchone()
    return ins is not None
