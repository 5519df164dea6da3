"""A student's account and its one-time sign-in code (issue #16 "For a student", D28-O).

A school admin prints a pupil a code slip from the console's person page: the pupil's login and
an 8-character code from an alphabet without look-alikes, valid 30 days. Only the code's
SHA-256 is stored (as sessions and guardian invitations, cloud/auth/invitations.py); printing a
new slip revokes the older code. The pupil types the code once in the app, with a new password,
and is signed in; from then on the login and password, as anyone else.

Who may print a slip follows the API's person scope (cloud/auth/scope.py): a school admin for a
pupil of their school, a platform admin for any pupil. Anyone else, another school's pupil or a
staff member answers "not found"."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from cloud.auth import scope, sessions
from cloud.auth.invitations import PASSWORD_MAX, PASSWORD_MIN
from cloud.auth.passwords import hash_password
from cloud.auth.principal import Principal, Role
from cloud.domain.errors import NotFound
from cloud.domain.store import audit

Conn = psycopg.Connection[Any]
TTL_S = 30 * 24 * 3600
LENGTH = 8
# Crockford's base 32: no I, L, O or U, so a printed code cannot be misread (0/O, 1/I/L)
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
# who prints slips: the API's UserManager (cloud/api/deps.py)
PRINTERS: tuple[Role, ...] = ("platform_admin", "school_admin")
NO_PASSWORD = "!student:code-pending"  # no password verifies against it (cloud/auth/passwords)


@dataclass(frozen=True)
class Slip:
    """What the school prints for the pupil."""

    name: str
    login: str
    code: str  # shown once: only its hash is kept
    expires_at: datetime


def login_for(person_id: int, school_id: str) -> str:
    """A pupil's login: their number at their school, e-mail shaped (users.email's rule) under
    a name no mail server answers for, so nothing is ever mailed there."""
    return f"{person_id}@{school_id.lower()}.pupil"


def normalise(code: str) -> str:
    """As typed: any case, spaces or dashes, O for 0 and I or L for 1."""
    return "".join(code.split()).replace("-", "").upper().translate(READ_AS)


def _digest(code: str) -> bytes:
    return sessions.digest("student-code:" + code)


def _pupil(conn: Conn, p: Principal, person_id: int) -> tuple[str, str]:
    """(name, school) of an active pupil in ``p``'s scope, else NotFound."""
    if p.role not in PRINTERS:
        raise NotFound(f"person {person_id} not found")
    school = scope.require_person(conn, p, person_id)
    row = conn.execute(
        "SELECT full_name FROM people WHERE id = %s AND kind = 'student' AND active",
        (person_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"person {person_id} not found")
    return str(row[0]), school


def account_of(conn: Conn, person_id: int) -> tuple[int, str, bool] | None:
    """The pupil's account: (user id, login, has a password), or None."""
    row = conn.execute(
        "SELECT u.id, u.email, u.password_hash NOT LIKE '!%%' FROM student_accounts a"
        " JOIN users u ON u.id = a.user_id WHERE a.person_id = %s",
        (person_id,),
    ).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), bool(row[2]))


def create(conn: Conn, p: Principal, person_id: int) -> Slip:
    """A new code for the pupil (their account made on the first one); the older open code is
    revoked. Caller commits."""
    name, school = _pupil(conn, p, person_id)
    found = account_of(conn, person_id)
    if found is None:
        login = login_for(person_id, school)
        row = conn.execute(
            "INSERT INTO users (email, password_hash, role, school_id)"
            " VALUES (%s, %s, 'student', %s) RETURNING id",
            (login, NO_PASSWORD, school),
        ).fetchone()
        assert row is not None
        user_id = int(row[0])
        conn.execute("INSERT INTO student_accounts (user_id, person_id) VALUES (%s, %s)",
                     (user_id, person_id))  # fmt: skip
        audit(conn, p, "create", "users", user_id, None,
              {"role": "student", "school_id": school, "person_id": person_id})  # fmt: skip
    else:
        user_id, login, _ = found
    conn.execute(
        "UPDATE student_codes SET revoked_at = now()"
        " WHERE student_id = %s AND used_at IS NULL AND revoked_at IS NULL",
        (user_id,),
    )
    code = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    row = conn.execute(
        "INSERT INTO student_codes (code_hash, student_id, created_by, expires_at)"
        " VALUES (%s, %s, %s, now() + make_interval(secs => %s)) RETURNING id, expires_at",
        (_digest(code), user_id, p.user_id, TTL_S),
    ).fetchone()
    assert row is not None
    after = {"student_id": user_id, "school_id": school, "expires_at": row[1].isoformat()}
    audit(conn, p, "create", "student_codes", row[0], None, after)
    return Slip(name, login, f"{code[:4]}-{code[4:]}", row[1])


Problem = Literal["unknown", "used", "expired", "revoked"]


@dataclass(frozen=True)
class Redeemed:
    problem: Problem | None
    login: str = ""
    session: str | None = None


def redeem(conn: Conn, code: str, password: str, ttl_s: int) -> Redeemed:
    """Use a live code: set the pupil's password, use the code up, end their other sessions and
    open a new one. A code that cannot be used, or a password out of bounds, changes nothing.
    Caller commits (and throttles: cloud/console/app_student.py)."""
    typed = normalise(code)
    if len(typed) != LENGTH or any(c not in ALPHABET for c in typed):
        return Redeemed("unknown")
    row = conn.execute(
        "SELECT c.id, c.student_id, u.email, c.used_at IS NOT NULL, c.revoked_at IS NOT NULL,"
        " c.expires_at <= now(), u.active FROM student_codes c JOIN users u ON u.id = c.student_id"
        " WHERE c.code_hash = %s FOR UPDATE OF c",
        (_digest(typed),),
    ).fetchone()
    if row is None or not row[6]:
        return Redeemed("unknown")
    code_id, user_id, login = int(row[0]), int(row[1]), str(row[2])
    problem: Problem | None = (
        "used" if row[3] else "revoked" if row[4] else "expired" if row[5] else None
    )
    if problem is not None:
        return Redeemed(problem, login)
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return Redeemed(None, login)
    conn.execute("UPDATE users SET password_hash = %s WHERE id = %s",
                 (hash_password(password), user_id))  # fmt: skip
    conn.execute("UPDATE student_codes SET used_at = now() WHERE id = %s", (code_id,))
    conn.execute("UPDATE sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
                 (user_id,))  # fmt: skip
    session = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, expires_at)"
        " VALUES (%s, %s, now() + make_interval(secs => %s))",
        (sessions.digest(session), user_id, ttl_s),
    )
    who = Principal(user_id=user_id, email=login, role="student")
    audit(conn, who, "update", "student_codes", code_id, None, {"used": True, "password": "set"})
    return Redeemed(None, login, session)
