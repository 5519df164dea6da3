"""Object-level scope: which schools and people a principal may see.

Role-level rules (which role may call which endpoint) live with the routes (cloud/api/deps.py
aliases). These functions answer the second question, "is this object inside the caller's
scope?", and raise NotFound when it is not, so a caller cannot probe what exists elsewhere.
"""

from __future__ import annotations

from typing import Any

import psycopg

from cloud.auth.principal import Principal
from cloud.domain.errors import NotFound

Conn = psycopg.Connection[Any]
# Roles that see people, not schools: a guardian their children, a student themself (D28-O).
PERSON_SCOPED = ("guardian", "student")


def school_ids(conn: Conn, p: Principal) -> list[str] | None:
    """Schools the principal may read; None means every school."""
    if p.role == "platform_admin":
        return None
    if p.role == "guardian":
        rows = conn.execute(
            "SELECT DISTINCT pe.school_id FROM guardian_students g"
            " JOIN people pe ON pe.id = g.person_id WHERE g.guardian_id = %s",
            (p.user_id,),
        ).fetchall()
        return [str(r[0]) for r in rows]
    if p.role == "student":  # their own school: its menu and dishes
        return [p.school_id] if p.school_id is not None else []
    if p.school_id is not None:
        return [p.school_id]
    if p.district_id is not None:
        rows = conn.execute(
            "SELECT id FROM schools WHERE district_id = %s", (p.district_id,)
        ).fetchall()
        return [str(r[0]) for r in rows]
    return []


def child_ids(conn: Conn, p: Principal) -> list[int]:
    """The people a person-scoped role sees: a guardian's children, a student's own person."""
    if p.role == "student":
        rows = conn.execute(  # an inactive (left, or erased) pupil's account sees no one
            "SELECT a.person_id FROM student_accounts a JOIN people pe ON pe.id = a.person_id"
            " WHERE a.user_id = %s AND pe.active",
            (p.user_id,),
        ).fetchall()
        return [int(r[0]) for r in rows]
    rows = conn.execute(
        "SELECT person_id FROM guardian_students WHERE guardian_id = %s", (p.user_id,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def require_school(conn: Conn, p: Principal, school_id: str) -> None:
    allowed = school_ids(conn, p)
    exists = conn.execute("SELECT 1 FROM schools WHERE id = %s", (school_id,)).fetchone()
    if exists is None or (allowed is not None and school_id not in allowed):
        raise NotFound(f"school {school_id!r} not found")


def require_person(conn: Conn, p: Principal, person_id: int) -> str:
    """Check the person is visible (guardians: own children only); return their school id."""
    row = conn.execute("SELECT school_id FROM people WHERE id = %s", (person_id,)).fetchone()
    if row is None:
        raise NotFound(f"person {person_id} not found")
    if p.role in PERSON_SCOPED:
        if person_id not in child_ids(conn, p):
            raise NotFound(f"person {person_id} not found")
    else:
        allowed = school_ids(conn, p)
        if allowed is not None and row[0] not in allowed:
            raise NotFound(f"person {person_id} not found")
    return str(row[0])
