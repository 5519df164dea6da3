"""Opaque bearer tokens (D8): 32 random bytes given to the client once; the database keeps only
their SHA-256, with an expiry, so a token can be revoked (logout) and a leaked table is useless."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, cast

import psycopg

from cloud.auth.passwords import verify_password
from cloud.auth.principal import Principal, Role

Conn = psycopg.Connection[Any]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def login(conn: Conn, email: str, password: str, ttl_s: int) -> tuple[str, int] | None:
    """A new token for valid credentials of an active user, else None. Caller commits."""
    row = conn.execute(
        "SELECT id, password_hash FROM users WHERE email = %s AND active", (email.strip().lower(),)
    ).fetchone()
    if not verify_password(row[1] if row else None, password) or row is None:
        return None
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, expires_at)"
        " VALUES (%s, %s, now() + make_interval(secs => %s))",
        (_digest(token), row[0], ttl_s),
    )
    return token, int(row[0])


def logout(conn: Conn, token: str) -> None:
    conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL",
        (_digest(token),),
    )


def digest(token: str) -> bytes:
    """What the database keeps of a token (its SHA-256)."""
    return _digest(token)


def principal_for(conn: Conn, token: str) -> Principal | None:
    """The user of a live (unexpired, unrevoked) token, or None."""
    if not token or len(token) > 200:
        return None
    found = lookup(conn, _digest(token))
    return None if found is None else found[0]


def lookup(conn: Conn, token_hash: bytes) -> tuple[Principal, float] | None:
    """The user of a live session, and the seconds until the session expires; or None."""
    row = conn.execute(
        "SELECT u.id, u.email, u.role, u.district_id, u.school_id,"
        " extract(epoch FROM s.expires_at - now())::float8"
        " FROM sessions s JOIN users u ON u.id = s.user_id"
        " WHERE s.token_hash = %s AND s.revoked_at IS NULL AND s.expires_at > now()"
        " AND u.active",
        (token_hash,),
    ).fetchone()
    if row is None:
        return None
    principal = Principal(
        user_id=int(row[0]),
        email=str(row[1]),
        role=cast(Role, row[2]),
        district_id=None if row[3] is None else int(row[3]),
        school_id=None if row[4] is None else str(row[4]),
    )
    return principal, float(row[5])
