"""Authorization codes, access tokens and refresh tokens in PostgreSQL (migration 0044).

Only SHA-256 digests are stored. A code is used once: a second use finds it used, answers
``invalid_grant`` and revokes every token issued from it (RFC 6749 §4.1.2). Refresh tokens
rotate: each is used once for a new one of the same family, and a used one presented again
revokes the whole family with its access tokens (RFC 9700 §4.14.2): whichever of the thief and
the platform comes second ends both."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def revoke_family(conn: Conn, family: uuid.UUID) -> None:
    conn.execute(
        "UPDATE oidc_access_tokens SET revoked_at = now() WHERE family = %s AND revoked_at IS NULL",
        (family,),
    )
    conn.execute(
        "UPDATE oidc_refresh_tokens SET revoked_at = now() WHERE family = %s"
        " AND revoked_at IS NULL",
        (family,),
    )


@dataclass
class Code:
    """Authlib's AuthorizationCodeMixin, as its grants and OpenIDCode read it."""

    code_hash: bytes
    client_id: str
    user_id: int
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str
    auth_time: datetime
    family: uuid.UUID
    code_challenge_method: str = "S256"

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.auth_time.timestamp())

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd"]


def save_code(conn: Conn, code: str, c: Code, ttl_s: int) -> None:
    conn.execute(
        "INSERT INTO oidc_codes (code_hash, client_id, user_id, redirect_uri, scope, nonce,"
        " code_challenge, auth_time, family, expires_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now() + %s)",
        (
            digest(code),
            c.client_id,
            c.user_id,
            c.redirect_uri,
            c.scope,
            c.nonce,
            c.code_challenge,
            c.auth_time,
            c.family,
            timedelta(seconds=ttl_s),
        ),  # fmt: skip
    )


def take_code(conn: Conn, code: str, client_id: str) -> Code | None:
    """The live code of this client, locked until the transaction ends (two concurrent token
    requests with one code: the second waits and finds it used). A used code revokes the
    tokens issued from it."""
    row = conn.execute(
        "SELECT code_hash, client_id, user_id, redirect_uri, scope, nonce, code_challenge,"
        " auth_time, family, used_at IS NOT NULL, expires_at <= now() FROM oidc_codes"
        " WHERE code_hash = %s AND client_id = %s FOR UPDATE",
        (digest(code), client_id),
    ).fetchone()
    if row is None:
        return None
    if row[9]:
        revoke_family(conn, row[8])
        return None
    if row[10]:
        return None
    return Code(bytes(row[0]), *row[1:9])


def mark_code_used(conn: Conn, c: Code) -> None:
    conn.execute("UPDATE oidc_codes SET used_at = now() WHERE code_hash = %s", (c.code_hash,))


def nonce_seen(conn: Conn, client_id: str, nonce: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM oidc_codes WHERE client_id = %s AND nonce = %s", (client_id, nonce)
    ).fetchone()
    return row is not None


@dataclass
class Refresh:
    """Authlib's TokenMixin for the refresh grant."""

    token_hash: bytes
    client_id: str
    user_id: int
    scope: str
    family: uuid.UUID
    auth_time: datetime

    def check_client(self, client: Any) -> bool:
        return bool(client.get_client_id() == self.client_id)

    def get_scope(self) -> str:
        return self.scope


def take_refresh(conn: Conn, token: str) -> Refresh | None:
    """A live refresh token, locked; a used one revokes its family and answers None."""
    row = conn.execute(
        "SELECT token_hash, client_id, user_id, scope, family, auth_time,"
        " used_at IS NOT NULL, revoked_at IS NOT NULL OR expires_at <= now()"
        " FROM oidc_refresh_tokens WHERE token_hash = %s FOR UPDATE",
        (digest(token),),
    ).fetchone()
    if row is None:
        return None
    if row[6]:
        revoke_family(conn, row[4])
        return None
    if row[7]:
        return None
    return Refresh(bytes(row[0]), *row[1:6])


def mark_refresh_used(conn: Conn, r: Refresh) -> None:
    conn.execute(
        "UPDATE oidc_refresh_tokens SET used_at = now() WHERE token_hash = %s", (r.token_hash,)
    )


def save_tokens(
    conn: Conn,
    token: dict[str, Any],
    client_id: str,
    user_id: int,
    family: uuid.UUID,
    auth_time: datetime,
    refresh_ttl_s: int,
) -> None:
    conn.execute(
        "INSERT INTO oidc_access_tokens (token_hash, client_id, user_id, scope, family,"
        " expires_at) VALUES (%s, %s, %s, %s, %s, now() + %s)",
        (
            digest(token["access_token"]),
            client_id,
            user_id,
            token["scope"],
            family,
            timedelta(seconds=int(token["expires_in"])),
        ),  # fmt: skip
    )
    if token.get("refresh_token"):
        conn.execute(
            "INSERT INTO oidc_refresh_tokens (token_hash, client_id, user_id, scope, family,"
            " auth_time, expires_at) VALUES (%s, %s, %s, %s, %s, %s, now() + %s)",
            (
                digest(token["refresh_token"]),
                client_id,
                user_id,
                token["scope"],
                family,
                auth_time,
                timedelta(seconds=refresh_ttl_s),
            ),  # fmt: skip
        )


@dataclass(frozen=True)
class Access:
    client_id: str
    user_id: int
    scope: str


def access(conn: Conn, token: str) -> Access | None:
    """A live access token of an enabled client and an active user, or None."""
    if not token or len(token) > 200:
        return None
    row = conn.execute(
        "SELECT t.client_id, t.user_id, t.scope FROM oidc_access_tokens t"
        " JOIN oidc_clients c ON c.client_id = t.client_id"
        " JOIN users u ON u.id = t.user_id"
        " WHERE t.token_hash = %s AND t.revoked_at IS NULL AND t.expires_at > now()"
        " AND c.disabled_at IS NULL AND u.active",
        (digest(token),),
    ).fetchone()
    return None if row is None else Access(str(row[0]), int(row[1]), str(row[2]))


def sweep(conn: Conn, limit: int = 500) -> int:
    """Delete codes and tokens expired for over a day (a day keeps a reused code or refresh
    token recognised as reuse while it could still matter). At most ``limit`` rows a table:
    each token request sweeps a little, so no job is needed and no request waits long."""
    deleted = 0
    for table in ("oidc_codes", "oidc_access_tokens", "oidc_refresh_tokens"):
        cur = conn.execute(
            f"DELETE FROM {table} WHERE ctid = ANY (ARRAY(SELECT ctid FROM {table}"  # noqa: S608
            " WHERE expires_at < now() - interval '1 day' LIMIT %s))",
            (limit,),
        )
        deleted += cur.rowcount
    return deleted
