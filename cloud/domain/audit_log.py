"""Reading the audit log in a caller's scope (the API's GET /audit and the console's Audit page).

Who may read it is the API's AuditReader (platform admins, school admins); a school admin sees
the rows of their own school only. The console pages newest first by keyset on the id
(``before``), so a page deep in a large log costs what the first one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from cloud.auth.principal import Principal

Conn = psycopg.Connection[Any]
ACTIONS = (
    "create",
    "update",
    "delete",
    "revoke",
    "withdraw",
    "link",
    "unlink",
    "login",
    "logout",
)  # fmt: skip  (the CHECK of audit_log.action, migration 0003)


def school_of(p: Principal) -> str | None:
    """The school the caller's rows are limited to (None: every row; platform admins)."""
    return p.school_id if p.role == "school_admin" else None


@dataclass
class AuditFilter:
    actor: str | None = None  # a part of the actor's e-mail
    action: str | None = None
    entity: str | None = None
    entity_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def rows_in_scope(
    conn: Conn, p: Principal, f: AuditFilter, before: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Up to ``limit`` rows, newest first, and the id to continue before (None: the last page)."""
    where = ["true"]
    params: list[Any] = []
    for cond, value in (
        ("school_id = %s", school_of(p)),
        ("actor ILIKE '%%' || %s || '%%'", f.actor and _like_escaped(f.actor)),
        ("action = %s", f.action),
        ("entity = %s", f.entity),
        ("entity_id = %s", f.entity_id),
        ("at >= %s", f.since),
        ("at < %s", f.until),
        ("id < %s", before),
    ):
        if value is not None:
            where.append(cond)
            params.append(value)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT id, at, actor_id, actor, action, entity, entity_id, school_id, before, after"
            f" FROM audit_log WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s",
            [*params, limit + 1],
        )
        rows = cur.fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (int(rows[-1]["id"]) if more and rows else None)


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
