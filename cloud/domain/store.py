"""Small generic helpers over plain SQL: paged listing and audited insert/update/delete.

Every change goes through ``insert``/``update``/``delete`` (or calls ``audit`` itself), which
writes the audit_log row on the same connection, hence in the caller's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cloud.auth.principal import Principal
from cloud.domain.errors import NotFound

Conn = psycopg.Connection[Any]
Row = dict[str, Any]

# never copied into the audit log
SECRET_COLUMNS = frozenset({"password_hash", "site_key", "token_hash"})


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return None
    return value


def _snapshot(row: Mapping[str, Any] | None) -> Jsonb | None:
    if row is None:
        return None
    doc = {k: _plain(v) for k, v in row.items() if k not in SECRET_COLUMNS}
    return Jsonb(json.loads(json.dumps(doc, default=str)))


def audit(
    conn: Conn,
    actor: Principal,
    action: str,
    entity: str,
    entity_id: object,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    school_id: str | None = None,
) -> None:
    if school_id is None:
        for row in (after, before):
            if row is not None and isinstance(row.get("school_id"), str):
                school_id = row["school_id"]
                break
    conn.execute(
        "INSERT INTO audit_log (actor_id, actor, action, entity, entity_id, school_id, before,"
        " after) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            actor.user_id,
            actor.label,
            action,
            entity,
            str(entity_id),
            school_id,
            _snapshot(before),
            _snapshot(after),
        ),
    )


def fetch_one(
    conn: Conn, query: sql.SQL | sql.Composed | str, params: Sequence[Any] = ()
) -> Row | None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query if not isinstance(query, str) else sql.SQL(query), params)  # type: ignore[arg-type]
        return cur.fetchone()


def get(conn: Conn, table: str, key: object, *, key_col: str = "id", lock: bool = False) -> Row:
    q = sql.SQL("SELECT * FROM {} WHERE {} = %s" + (" FOR UPDATE" if lock else "")).format(
        sql.Identifier(table), sql.Identifier(key_col)
    )
    row = fetch_one(conn, q, (key,))
    if row is None:
        raise NotFound(f"{table.rstrip('s')} {key} not found")
    return row


def page(
    conn: Conn,
    table: str,
    where: Sequence[tuple[str, Any]],
    *,
    order: str = "id",
    limit: int,
    offset: int,
    columns: str = "*",
) -> tuple[int, list[Row]]:
    """``where`` is a list of (SQL condition with one %s, value); a value of None skips it.
    A tuple value fills a condition with several placeholders."""
    conds = [c for c, v in where if v is not None]
    params: list[Any] = []
    for _, v in where:
        if isinstance(v, tuple):
            params.extend(v)
        elif v is not None:
            params.append(v)
    cond = sql.SQL(" AND ".join(conds) if conds else "TRUE")
    tbl = sql.Identifier(table)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("SELECT count(*) AS n FROM {} t WHERE {}").format(tbl, cond), params)
        count = cur.fetchone()
        cur.execute(
            sql.SQL("SELECT {} FROM {} t WHERE {} ORDER BY {} LIMIT %s OFFSET %s").format(
                sql.SQL(columns), tbl, cond, sql.SQL(order)
            ),
            [*params, limit, offset],
        )
        rows = cur.fetchall()
    return (int(count["n"]) if count else 0), rows


def insert(
    conn: Conn,
    actor: Principal,
    table: str,
    values: Mapping[str, Any],
    *,
    school_id: str | None = None,
) -> Row:
    cols = list(values)
    q = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING *").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, cols)),
        sql.SQL(", ").join(sql.Placeholder() * len(cols)),
    )
    row = fetch_one(conn, q, [values[c] for c in cols])
    assert row is not None
    audit(conn, actor, "create", table, row.get("id", ""), None, row, school_id)
    return row


def update(
    conn: Conn,
    actor: Principal,
    table: str,
    key: object,
    values: Mapping[str, Any],
    *,
    key_col: str = "id",
    action: str = "update",
    school_id: str | None = None,
) -> Row:
    before = get(conn, table, key, key_col=key_col, lock=True)
    if not values:
        return before
    q = sql.SQL("UPDATE {} SET {} WHERE {} = %s RETURNING *").format(
        sql.Identifier(table),
        sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values),
        sql.Identifier(key_col),
    )
    row = fetch_one(conn, q, [*values.values(), key])
    assert row is not None
    audit(conn, actor, action, table, key, before, row, school_id)
    return row


def delete(conn: Conn, actor: Principal, table: str, key: object, *, key_col: str = "id") -> Row:
    before = get(conn, table, key, key_col=key_col, lock=True)
    conn.execute(
        sql.SQL("DELETE FROM {} WHERE {} = %s").format(
            sql.Identifier(table), sql.Identifier(key_col)
        ),
        (key,),
    )
    audit(conn, actor, "delete", table, key, before, None)
    return before
