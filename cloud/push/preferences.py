"""A guardian's notification settings (migration 0037, D28-H) and where the push path obeys
them: which kinds of notice they want, and quiet hours during which notices are held and then
sent as one summary when the quiet hours end.

The Web Push service (cloud/push/service.py) asks :func:`admit` which recipients get a notice
now; the ones in their quiet hours get it held (``push_held``) and one outbox row of kind
``quiet_summary`` per guardian and end of quiet hours, due at that end, pushes them together.
Staff notices (the report reminder) have no setting and are never held."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

Conn = psycopg.Connection[Any]
KINDS = ("attendance", "meals", "low_balance")
SUMMARY_KIND = "quiet_summary"


@dataclass(frozen=True)
class Settings:
    attendance: bool = True
    meals: bool = True
    low_balance: bool = True
    quiet_from: time | None = None
    quiet_to: time | None = None


def setting_of(kind: str, reader: str | None) -> str | None:
    """The setting that governs a notice (None: not a guardian's notice, always sent)."""
    if kind == "parent_notification":
        return "meals" if reader == "canteen" else "attendance"
    if kind == "tap_summary":
        return "attendance"
    if kind == "low_balance":
        return "low_balance"
    return None


def load(conn: Conn, user_id: int) -> Settings:
    row = conn.execute(
        "SELECT attendance, meals, low_balance, quiet_from, quiet_to"
        " FROM notification_settings WHERE user_id = %s",
        (user_id,),
    ).fetchone()
    return Settings() if row is None else Settings(*row)


def save(conn: Conn, user_id: int, s: Settings) -> tuple[Settings, Settings]:
    """Store the settings; -> (before, after) for the audit log."""
    if (s.quiet_from is None) != (s.quiet_to is None) or (
        s.quiet_from is not None and s.quiet_from == s.quiet_to
    ):
        raise ValueError("quiet hours need two different times")
    before = load(conn, user_id)
    conn.execute(
        "INSERT INTO notification_settings"
        " (user_id, attendance, meals, low_balance, quiet_from, quiet_to)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (user_id) DO UPDATE SET"
        " attendance = EXCLUDED.attendance, meals = EXCLUDED.meals,"
        " low_balance = EXCLUDED.low_balance, quiet_from = EXCLUDED.quiet_from,"
        " quiet_to = EXCLUDED.quiet_to, updated_at = now()",
        (user_id, s.attendance, s.meals, s.low_balance, s.quiet_from, s.quiet_to),
    )
    return before, s


# Per notice and recipient: do they want this kind, and if now (in the zone of the school of
# the child the notice is about) is inside their quiet hours, the instant those end. from > to
# spans midnight. One query for a whole batch of notices (the morning burst).
_SORT = """
WITH n AS (
    SELECT * FROM unnest(%(idx)s::int[], %(person)s::bigint[], %(key)s::text[],
                         %(col)s::text[], %(user)s::bigint[]) AS n(idx, person, key, col, user_id)
)
SELECT n.idx, n.user_id,
       coalesce(CASE n.col WHEN 'attendance' THEN ns.attendance WHEN 'meals' THEN ns.meals
                           WHEN 'low_balance' THEN ns.low_balance END, true),
       CASE WHEN ns.quiet_from IS NULL OR here.tz IS NULL THEN NULL
            WHEN (ns.quiet_from < ns.quiet_to
                  AND here.lt::time >= ns.quiet_from AND here.lt::time < ns.quiet_to)
              OR (ns.quiet_from > ns.quiet_to
                  AND (here.lt::time >= ns.quiet_from OR here.lt::time < ns.quiet_to))
            THEN ((here.lt::date + CASE WHEN here.lt::time < ns.quiet_to THEN 0 ELSE 1 END)
                  + ns.quiet_to) AT TIME ZONE here.tz
       END,
       EXISTS (SELECT 1 FROM push_held h
               WHERE h.user_id = n.user_id AND h.idempotency_key = n.key)
FROM n
LEFT JOIN notification_settings ns ON ns.user_id = n.user_id
LEFT JOIN LATERAL (
    SELECT s.timezone AS tz, now() AT TIME ZONE s.timezone AS lt
    FROM people p JOIN schools s ON s.id = p.school_id WHERE p.id = n.person
) here ON true
ORDER BY n.idx, n.user_id
"""


@dataclass(frozen=True)
class Notice:
    """One notice on its way to its recipients, as :func:`admit_many` needs it."""

    kind: str
    reader: str | None
    key: str
    person_id: int | None
    recipients: list[int]
    fields: dict[str, Any]


def admit(
    conn: Conn, kind: str, reader: str | None, key: str, person_id: int | None,
    recipients: list[int], fields: dict[str, Any],
) -> list[int]:  # fmt: skip
    """The recipients who get this notice now. Those who opted out of its kind get nothing;
    those in their quiet hours get it held for the summary (once per notice key)."""
    return admit_many(conn, [Notice(kind, reader, key, person_id, recipients, fields)])[0]


def admit_many(conn: Conn, notices: list[Notice]) -> list[list[int]]:
    """:func:`admit` for many notices with one query: per notice, who gets it now."""
    out: list[list[int]] = [[] for _ in notices]
    idx: list[int] = []
    person: list[int | None] = []
    keys: list[str] = []
    cols: list[str] = []
    users: list[int] = []
    for i, n in enumerate(notices):
        column = setting_of(n.kind, n.reader)
        if column is None:
            out[i] = list(n.recipients)  # staff notices have no setting
            continue
        for user_id in n.recipients:
            idx.append(i)
            person.append(n.person_id)
            keys.append(n.key)
            cols.append(column)
            users.append(user_id)
    if not idx:
        return out
    rows = conn.execute(
        _SORT, {"idx": idx, "person": person, "key": keys, "col": cols, "user": users}
    ).fetchall()
    for i, user_id, wants, release_at, already_held in rows:
        if not wants or already_held:
            continue
        if release_at is None:
            out[i].append(int(user_id))
        else:
            n = notices[i]
            hold(conn, int(user_id), n.key, n.kind, n.fields, release_at)
    return out


def hold(
    conn: Conn, user_id: int, key: str, kind: str, fields: dict[str, Any], release_at: datetime
) -> None:
    conn.execute(
        "INSERT INTO push_held (user_id, idempotency_key, kind, fields, release_at)"
        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (user_id, idempotency_key) DO NOTHING",
        (user_id, key, kind, Jsonb(fields), release_at),
    )
    conn.execute(
        "INSERT INTO outbox (kind, idempotency_key, payload, next_attempt_at)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING",
        (
            SUMMARY_KIND,
            f"quiet:{user_id}:{int(release_at.timestamp())}",
            Jsonb({"v": 1, "user_id": user_id, "release_at": release_at.isoformat()}),
            release_at,
        ),
    )


def held(conn: Conn, user_id: int, upto: str) -> list[dict[str, Any]]:
    """The notices held for ``user_id`` and due by ``upto`` (ISO instant), oldest first, as
    ``{"kind": ..., **fields}`` for cloud/push/texts.py."""
    rows = conn.execute(
        "SELECT kind, fields FROM push_held WHERE user_id = %s AND released_at IS NULL"
        " AND release_at <= %s::timestamptz ORDER BY held_at, id",
        (user_id, upto),
    ).fetchall()
    return [{"kind": k, **f} for k, f in rows]


def release(conn: Conn, user_id: int, upto: str) -> None:
    conn.execute(
        "UPDATE push_held SET released_at = now() WHERE user_id = %s AND released_at IS NULL"
        " AND release_at <= %s::timestamptz",
        (user_id, upto),
    )
