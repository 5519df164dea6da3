"""A platform admin's session token for a test database: the API needs a token by default
(D24-E), so tests that read GET /api/v1/events use one (importable from every test folder)."""

from __future__ import annotations

import hashlib

import psycopg


def make_admin_token(database_url: str, email: str = "reader@qadam.test") -> str:
    """A platform admin and a session token for it, written straight into the database (the API
    needs a token by default, D24-E; argon2 login is covered by tests/cloud/test_auth.py)."""
    import secrets

    from cloud.domain.users import create_user

    token = secrets.token_urlsafe(32)
    with psycopg.connect(database_url) as conn:
        uid = create_user(conn, email, secrets.token_urlsafe(16), "platform_admin")
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at)"
            " VALUES (%s, %s, now() + interval '1 hour')",
            (hashlib.sha256(token.encode()).digest(), uid),
        )
    return token


def session_headers(database_url: str, user_id: int) -> dict[str, str]:
    """The Authorization header of a fresh session for an existing user, written straight into
    the database."""
    import secrets

    token = secrets.token_urlsafe(32)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, expires_at)"
            " VALUES (%s, %s, now() + interval '1 hour')",
            (hashlib.sha256(token.encode()).digest(), user_id),
        )
    return {"Authorization": f"Bearer {token}"}
