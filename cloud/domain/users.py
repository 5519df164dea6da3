"""User accounts outside the API: the first platform admin, fixtures, imports.

The API creates users through cloud/api/users.py (audited); this is the bootstrap path.
"""

from __future__ import annotations

from typing import Any

import psycopg

from cloud.auth.passwords import hash_password


def create_user(
    conn: psycopg.Connection[Any],
    email: str,
    password: str,
    role: str,
    *,
    full_name: str = "",
    district_id: int | None = None,
    school_id: str | None = None,
) -> int:
    row = conn.execute(
        "INSERT INTO users (email, password_hash, full_name, role, district_id, school_id)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
        (email.lower(), hash_password(password), full_name, role, district_id, school_id),
    ).fetchone()
    assert row is not None
    return int(row[0])
