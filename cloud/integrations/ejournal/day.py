"""A school's day as an e-journal receives it, read from ``attendance`` (written by the ingest,
D21): every active pupil of the school, present or not, with the first entry, the last exit and
how late the first entry was after the school's start (local time, the school's time zone)."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg

from cloud.domain.errors import NotFound
from cloud.integrations.ejournal.contract import PupilDay, SchoolDay

Conn = psycopg.Connection[Any]

_SCHOOL = """
SELECT e.external_id, to_char(e.starts_at, 'HH24:MI') FROM ejournal_schools e
WHERE e.school_id = %s"""
_PUPILS = """
SELECT p.id, p.external_id, c.name, a.person_id IS NOT NULL, a.first_in, a.last_out,
       CASE WHEN (a.first_in AT TIME ZONE s.timezone)::time > e.starts_at
            THEN ceil(extract(epoch FROM (a.first_in AT TIME ZONE s.timezone)::time
                                         - e.starts_at) / 60)::int
            ELSE 0 END
FROM people p
JOIN schools s ON s.id = p.school_id
JOIN ejournal_schools e ON e.school_id = p.school_id
LEFT JOIN classes c ON c.id = p.class_id
LEFT JOIN attendance a ON a.person_id = p.id AND a.day = %s
WHERE p.school_id = %s AND p.kind = 'student' AND p.active
ORDER BY c.name NULLS LAST, p.id"""


def school_day(conn: Conn, school_id: str, day: date) -> SchoolDay:
    row = conn.execute(_SCHOOL, (school_id,)).fetchone()
    if row is None:
        raise NotFound(f"school {school_id!r} is not connected to an e-journal")
    pupils = [PupilDay(int(r[0]), r[1], r[2], bool(r[3]), r[4], r[5], int(r[6]))
              for r in conn.execute(_PUPILS, (day, school_id))]  # fmt: skip
    return SchoolDay(school_id, str(row[0]), day, str(row[1]), pupils)
