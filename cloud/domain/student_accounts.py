"""Pupils' app accounts made in bulk or set by the school (issue #16 "For a student", D29-E).

D28-O made one account at a time, on the first code slip (cloud/auth/student_codes.py). Here:
- accounts for many pupils at once (the import's ``student_account`` column), set-based, with
  no usable password until the pupil uses a code or the school sets one;
- a password the school sets for a pupil directly (the person page), with the app's password
  rules; it ends the pupil's sessions and revokes an unused code (a slip left in a bag must not
  reset the password the school just set);
- a new code for every pupil of a class at once, for a printed sheet of slips.

Who may do this is who may print a slip (``student_codes.PRINTERS``, the API's UserManager), in
the API's person and school scope (cloud/auth/scope.py); anything else answers "not found"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from cloud.auth import scope, student_codes
from cloud.auth.invitations import PASSWORD_MAX, PASSWORD_MIN
from cloud.auth.passwords import hash_password
from cloud.auth.principal import Principal
from cloud.domain.errors import NotFound
from cloud.domain.store import audit

Conn = psycopg.Connection[Any]


def create_accounts(
    conn: Conn, actor: Principal, school_id: str, person_ids: list[int], audited: bool = True
) -> list[int]:
    """An account (login ``<id>@<school>.pupil``, no usable password) for each pupil given that
    has none; the user ids made. The caller planned ``person_ids`` as active pupils of
    ``school_id`` (the table's trigger stands behind it). One audit row for the lot, unless the
    caller's own audit row lists them (the import's summary)."""
    if not person_ids:
        return []
    rows = conn.execute(
        "INSERT INTO users (email, password_hash, role, school_id)"
        " SELECT lower(p.id || '@' || %s || '.pupil'), %s, 'student', %s"
        " FROM unnest(%s::bigint[]) AS u(id) JOIN people p ON p.id = u.id"
        " WHERE NOT EXISTS (SELECT 1 FROM student_accounts a WHERE a.person_id = p.id)"
        " ORDER BY p.id RETURNING id, email",
        (school_id, student_codes.NO_PASSWORD, school_id, person_ids),
    ).fetchall()
    if not rows:
        return []
    user_ids = [int(r[0]) for r in rows]
    people = [int(str(r[1]).split("@", 1)[0]) for r in rows]
    conn.execute(
        "INSERT INTO student_accounts (user_id, person_id)"
        " SELECT * FROM unnest(%s::bigint[], %s::bigint[])",
        (user_ids, people),
    )
    if audited:
        audit(conn, actor, "create", "users", f"students:{len(user_ids)}", None,
              {"role": "student", "school_id": school_id, "user_ids": user_ids,
               "person_ids": people})  # fmt: skip
    return user_ids


class BadPassword(ValueError):
    """The password breaks the app's rules (length); nothing was changed."""


def set_password(conn: Conn, p: Principal, person_id: int, password: str) -> str:
    """Set the pupil's password (their account made if they have none): the same length rule
    as the app's code page and password change. Ends the pupil's sessions and revokes an unused
    code. Audited without the password. Returns the pupil's login. Caller commits."""
    _, school = pupil_in_reach(conn, p, person_id)
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise BadPassword(f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    found = student_codes.account_of(conn, person_id)
    if found is None:
        create_accounts(conn, p, school, [person_id])
        found = student_codes.account_of(conn, person_id)
        assert found is not None
    user_id, login, had = found
    conn.execute("UPDATE users SET password_hash = %s WHERE id = %s",
                 (hash_password(password), user_id))  # fmt: skip
    codes = conn.execute(
        "UPDATE student_codes SET revoked_at = now()"
        " WHERE student_id = %s AND used_at IS NULL AND revoked_at IS NULL RETURNING id",
        (user_id,),
    ).fetchall()
    ended = conn.execute(  # the NOTIFY trigger (migration 0025) drops them from token caches
        "UPDATE sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
        (user_id,),
    ).rowcount
    audit(conn, p, "update", "users", user_id, {"password": "set" if had else "none"},
          {"password": "set by the school", "school_id": school, "person_id": person_id,
           "sessions_ended": ended, "codes_revoked": [int(r[0]) for r in codes]})  # fmt: skip
    return login


def pupil_in_reach(conn: Conn, p: Principal, person_id: int) -> tuple[str, str]:
    """(name, school) of an active pupil in ``p``'s scope whom ``p`` may give access; else
    NotFound, as the slip does."""
    if p.role not in student_codes.PRINTERS:
        raise NotFound(f"person {person_id} not found")
    school = scope.require_person(conn, p, person_id)
    row = conn.execute(
        "SELECT full_name FROM people WHERE id = %s AND kind = 'student' AND active",
        (person_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"person {person_id} not found")
    return str(row[0]), school


@dataclass(frozen=True)
class ClassPupil:
    person_id: int
    name: str
    has_password: bool


def class_pupils(conn: Conn, p: Principal, class_id: int) -> tuple[str, str, list[ClassPupil]]:
    """(school, class name, its active pupils by name) for someone who may print slips; a class
    outside their scope (or none) is NotFound."""
    row = conn.execute("SELECT school_id, name FROM classes WHERE id = %s", (class_id,)).fetchone()
    if row is None or p.role not in student_codes.PRINTERS:
        raise NotFound(f"class {class_id} not found")
    school = str(row[0])
    scope.require_school(conn, p, school)
    pupils = conn.execute(
        "SELECT pe.id, pe.full_name, coalesce(u.password_hash NOT LIKE '!%%', false)"
        " FROM people pe LEFT JOIN student_accounts a ON a.person_id = pe.id"
        " LEFT JOIN users u ON u.id = a.user_id"
        " WHERE pe.class_id = %s AND pe.kind = 'student' AND pe.active"
        " ORDER BY pe.full_name, pe.id",
        (class_id,),
    ).fetchall()
    return school, str(row[1]), [ClassPupil(int(r[0]), str(r[1]), bool(r[2])) for r in pupils]


def class_slips(
    conn: Conn, p: Principal, class_id: int, only_new: bool
) -> tuple[str, str, list[student_codes.Slip]]:
    """New codes for the class's active pupils (``only_new``: those without a password yet),
    each revoking that pupil's older code, as the person page's slip does; accounts made where
    missing. (school, class name, slips in name order). Caller commits."""
    school, name, pupils = class_pupils(conn, p, class_id)
    chosen = [x for x in pupils if not (only_new and x.has_password)]
    create_accounts(conn, p, school, [x.person_id for x in chosen])
    return school, name, [student_codes.create(conn, p, x.person_id) for x in chosen]
