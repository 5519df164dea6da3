"""Who a notice is for and what it says: per push message, the recipients (user ids) and the
fields its text is rendered from (cloud/push/texts.py).

Notices about a child (taps, late-tap summaries, low balance) are read for a whole batch with
one query: the child's name, the instants in the school's local time, the guardians. The
report reminder (school admins) and the quiet-hours summary (held notices) are rare and read
one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from cloud.push import preferences
from cloud.push.message import PushMessage

Conn = psycopg.Connection[Any]
Found = tuple[list[int], dict[str, Any]]

# the local date and time in the school's zone, by PostgreSQL's rules (as attendance and the
# reports have them; zoneinfo does not know every zone schools.timezone accepts)
_CHILDREN = """
SELECT r.idx, pe.full_name,
       to_char(r.a AT TIME ZONE s.timezone, 'YYYY-MM-DD HH24:MI'),
       to_char(r.b AT TIME ZONE s.timezone, 'YYYY-MM-DD HH24:MI'),
       ARRAY(SELECT g.guardian_id FROM guardian_students g WHERE g.person_id = pe.id
             ORDER BY g.guardian_id)
FROM unnest(%s::int[], %s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS r(idx, person, a, b)
JOIN people pe ON pe.id = r.person
JOIN schools s ON s.id = pe.school_id
"""


def find(conn: Conn, messages: Sequence[PushMessage]) -> list[Found]:
    """Per message (same order): its recipients and its text's fields."""
    out: list[Found] = [([], {}) for _ in messages]
    idx: list[int] = []
    people: list[int] = []
    firsts: list[str | None] = []
    lasts: list[str | None] = []
    for i, m in enumerate(messages):
        if m.kind in ("report_reminder", preferences.SUMMARY_KIND):
            out[i] = _one(conn, m)
        elif m.person_id is not None:
            p = m.payload or {}
            first, last = (
                (p.get("first"), p.get("last"))
                if m.kind == "tap_summary"
                else (m.occurred_at, None)
            )
            idx.append(i)
            people.append(m.person_id)
            firsts.append(first)
            lasts.append(last)
    if idx:
        rows = conn.execute(_CHILDREN, (idx, people, firsts, lasts)).fetchall()
        for i, name, first, last, guardians in rows:
            out[i] = (list(guardians), _child_fields(messages[i], name, first, last))
    return out


def _one(conn: Conn, message: PushMessage) -> Found:
    p = message.payload or {}
    if message.kind == "report_reminder":
        school = message.school_id or p.get("school_id")
        rows = conn.execute(
            "SELECT id FROM users WHERE role = 'school_admin' AND school_id = %s AND active",
            (school,),
        ).fetchall()
        fields = {"school_id": school, "month": p.get("month"), "deadline": p.get("deadline")}
        return [r[0] for r in rows], fields
    user, upto = int(p["user_id"]), str(p["release_at"])
    items = preferences.held(conn, user, upto)
    return ([user] if items else []), {"upto": upto, "items": items}


def _child_fields(
    message: PushMessage, name: str, first: str | None, last: str | None
) -> dict[str, Any]:
    p = message.payload or {}
    fields: dict[str, Any] = {"person_id": message.person_id, "name": name}
    if message.kind == "low_balance":
        fields.update(balance=p.get("balance"), below_floor=bool(p.get("below_floor")))
    elif message.kind == "tap_summary":
        a, b = _split(first), _split(last)
        fields.update(
            count=p.get("count"), untimed=p.get("untimed") or 0,
            first_date=a["date"], first_time=a["time"],
            last_date=b["date"], last_time=b["time"],
        )  # fmt: skip
    else:
        fields.update(reader=message.reader, **_split(first))
        if p.get("time_source") == "received":
            fields["time_source"] = "received"
    return fields


def _split(local: str | None) -> dict[str, str]:
    """'YYYY-MM-DD HH:MM' -> ``date`` and ``time`` (empty strings for no instant)."""
    date, _, time = (local or "").partition(" ")
    return {"date": date, "time": time}
