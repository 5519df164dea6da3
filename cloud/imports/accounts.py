"""The pupils import's ``student_account`` column (issue #16 "For a student", D29-E): "yes" makes
the pupil an app account (login ``<id>@<school>.pupil``, no password until the pupil uses a code
slip or the school sets one); "no" or an empty cell changes nothing: an account is never removed
by an import (the school deactivates the pupil for that)."""

from __future__ import annotations

from typing import Any

import psycopg

Conn = psycopg.Connection[Any]

YES = frozenset(("yes", "y", "true", "1", "+", "x", "да", "д", "иә", "ия", "ә"))
NO = frozenset(("no", "n", "false", "0", "-", "нет", "н", "жоқ", "ж"))
HINT = "write yes or no (да or нет; иә or жоқ), or leave it empty"


def parse_flag(value: str) -> tuple[bool | None, str | None]:
    """(wanted, problem): True for yes, None for an empty cell or no (nothing to make)."""
    v = value.strip().casefold()
    if not v or v in NO:
        return None, None
    if v in YES:
        return True, None
    return None, f"student_account {value.strip()!r} is neither yes nor no: {HINT}"


def with_accounts(conn: Conn, person_ids: list[int]) -> set[int]:
    """Which of these people have an app account already."""
    rows = conn.execute(
        "SELECT person_id FROM student_accounts WHERE person_id = ANY(%s)", (person_ids,)
    ).fetchall()
    return {int(r[0]) for r in rows}
