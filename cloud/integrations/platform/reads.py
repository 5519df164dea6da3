"""What a platform reads: a school's attendance and meals of one local day (D29-I). Our
numbers and the school's own external ids, no names: a platform that needs names has them from
its own registers under the external id."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from psycopg.rows import dict_row

Conn = psycopg.Connection[Any]


def attendance(conn: Conn, school_id: str, day: date) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT a.person_id, p.external_id, p.kind AS person_kind, c.name AS class,"
            " a.first_in, a.last_out, a.passages"
            " FROM attendance a JOIN people p ON p.id = a.person_id"
            " LEFT JOIN classes c ON c.id = p.class_id"
            " WHERE a.school_id = %s AND a.day = %s ORDER BY a.person_id",
            (school_id, day),
        ).fetchall()


def meals(conn: Conn, school_id: str, day: date) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT m.device_id || ':' || m.boot || ':' || m.seq AS event_id, m.person_id,"
            " p.external_id, m.occurred_at, m.dish_id,"
            " CASE m.meal_category WHEN 1 THEN 'free' WHEN 2 THEN 'reduced' WHEN 3 THEN 'paid'"
            " END AS meal_kind"
            " FROM meal_receipts m LEFT JOIN people p ON p.id = m.person_id"
            " WHERE m.school_id = %s AND m.day = %s ORDER BY m.occurred_at, event_id",
            (school_id, day),
        ).fetchall()
