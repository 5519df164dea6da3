"""Guardian invitations (D27-F): a one-time link that lets a guardian set a password and signs
them in. Only the token's SHA-256 is stored; a link works once, until it expires, and only while
it is the guardian's newest (making one revokes the older ones).

Who may invite whom follows the API's rule for linking guardians (D24-D): a school admin, a
guardian their school created or one linked to a pupil of their school; a platform admin, any
guardian. Anyone else answers "not found", so ids cannot be probed."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from cloud.auth import sessions
from cloud.auth.passwords import hash_password
from cloud.auth.principal import Principal
from cloud.domain.errors import NotFound
from cloud.domain.store import audit

Conn = psycopg.Connection[Any]
TTL_S = 14 * 24 * 3600  # two weeks: a printed letter goes home in a schoolbag
PATH = "/app/invite/"
PASSWORD_MIN = 10  # as the API's user creation and the console's password change
PASSWORD_MAX = 1024


@dataclass(frozen=True)
class Invitation:
    id: int
    guardian_id: int
    email: str
    full_name: str
    locale: str | None
    token: str  # shown once: only its hash is kept
    expires_at: datetime


@dataclass(frozen=True)
class Guardian:
    id: int
    email: str
    full_name: str
    locale: str | None
    children: str  # their children's names in the admin's scope, comma-separated
    signed_in: bool  # has a password (set by an invitation, or created with one)
    invited_until: datetime | None  # the live invitation's expiry, if any


def guardians_in_scope(conn: Conn, p: Principal) -> list[Guardian]:
    """The guardians ``p`` may invite: a school admin's school's (created by it or linked to
    its pupils); a platform admin's, every one. Newest first."""
    if p.role == "school_admin":
        where = ("(u.created_by_school = %(school)s OR u.id IN (SELECT g.guardian_id FROM"
                 " guardian_students g JOIN people pe ON pe.id = g.person_id"
                 " WHERE pe.school_id = %(school)s))")  # fmt: skip
    elif p.role == "platform_admin":
        where = "TRUE"
    else:
        return []
    rows = conn.execute(
        "SELECT u.id, u.email, u.full_name, u.locale,"
        " coalesce((SELECT string_agg(pe.full_name, ', ' ORDER BY pe.full_name)"
        "  FROM guardian_students g JOIN people pe ON pe.id = g.person_id"
        "  WHERE g.guardian_id = u.id AND (%(school)s::text IS NULL"
        "   OR pe.school_id = %(school)s)), ''),"
        " u.password_hash NOT LIKE '!%%',"
        " (SELECT i.expires_at FROM guardian_invitations i WHERE i.guardian_id = u.id"
        "  AND i.used_at IS NULL AND i.revoked_at IS NULL AND i.expires_at > now())"
        f" FROM users u WHERE u.role = 'guardian' AND u.active AND {where}"
        " ORDER BY u.id DESC LIMIT 500",
        {"school": p.school_id},
    ).fetchall()
    return [Guardian(*r) for r in rows]


def _require_guardian(conn: Conn, p: Principal, guardian_id: int) -> tuple[str, str, str | None]:
    found = [g for g in guardians_in_scope(conn, p) if g.id == guardian_id]
    if not found:
        raise NotFound(f"guardian {guardian_id} not found")
    return found[0].email, found[0].full_name, found[0].locale


def create(conn: Conn, p: Principal, guardian_id: int) -> Invitation:
    """A new invitation for the guardian; their older open ones are revoked. Caller commits."""
    email, full_name, locale = _require_guardian(conn, p, guardian_id)
    conn.execute(
        "UPDATE guardian_invitations SET revoked_at = now()"
        " WHERE guardian_id = %s AND used_at IS NULL AND revoked_at IS NULL",
        (guardian_id,),
    )
    token = secrets.token_urlsafe(32)
    row = conn.execute(
        "INSERT INTO guardian_invitations (token_hash, guardian_id, created_by, school_id,"
        " expires_at) VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s))"
        " RETURNING id, expires_at",
        (sessions.digest(token), guardian_id, p.user_id, p.school_id, TTL_S),
    ).fetchone()
    assert row is not None
    audit(conn, p, "create", "guardian_invitations", row[0], None,
          {"guardian_id": guardian_id, "expires_at": row[1].isoformat()})  # fmt: skip
    return Invitation(row[0], guardian_id, email, full_name, locale, token, row[1])


Problem = Literal["unknown", "used", "expired", "revoked"]


@dataclass(frozen=True)
class Opened:
    """What a link names: the invitation's id and guardian, or why it cannot be used."""

    problem: Problem | None
    invitation_id: int | None = None
    guardian_id: int | None = None
    email: str = ""
    locale: str | None = None


def open_link(conn: Conn, token: str, lock: bool = False) -> Opened:
    """The invitation behind ``token``, without changing anything (``lock``: hold its row until
    the transaction ends, so two tabs cannot both use it)."""
    if not token or len(token) > 200:
        return Opened("unknown")
    row = conn.execute(
        "SELECT i.id, i.guardian_id, u.email, u.locale, i.used_at IS NOT NULL,"
        " i.revoked_at IS NOT NULL, i.expires_at <= now(), u.active"
        " FROM guardian_invitations i JOIN users u ON u.id = i.guardian_id"
        " WHERE i.token_hash = %s" + (" FOR UPDATE OF i" if lock else ""),
        (sessions.digest(token),),
    ).fetchone()
    if row is None or not row[7]:
        return Opened("unknown")
    problem: Problem | None = (
        "used" if row[4] else "revoked" if row[5] else "expired" if row[6] else None
    )
    return Opened(problem, row[0], row[1], row[2], row[3])


def accept(conn: Conn, token: str, password: str, ttl_s: int) -> tuple[Opened, str | None]:
    """Set the guardian's password from a live link, use the link up, end the guardian's other
    sessions and open a new one: (what the link named, the session token). A link that cannot
    be used, or a password out of bounds, changes nothing (no token). Caller commits."""
    opened = open_link(conn, token, lock=True)
    if opened.problem is not None or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return opened, None
    conn.execute(
        "UPDATE users SET password_hash = %s WHERE id = %s",
        (hash_password(password), opened.guardian_id),
    )
    conn.execute("UPDATE guardian_invitations SET used_at = now() WHERE id = %s",
                 (opened.invitation_id,))  # fmt: skip
    conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
        (opened.guardian_id,),
    )
    session = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, expires_at)"
        " VALUES (%s, %s, now() + make_interval(secs => %s))",
        (sessions.digest(session), opened.guardian_id, ttl_s),
    )
    who = Principal(user_id=opened.guardian_id, email=opened.email, role="guardian")
    audit(conn, who, "update", "guardian_invitations", opened.invitation_id, None,
          {"used": True, "password": "set"})  # fmt: skip
    return opened, session
