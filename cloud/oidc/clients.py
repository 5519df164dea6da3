"""Relying parties (learning platforms) and their registration by a platform admin.

A client is confidential: it authenticates at the token endpoint with its secret
(``client_secret_basic`` or ``client_secret_post``). The secret is 32 random bytes shown once;
the database keeps its SHA-256 (a random secret needs no slow hash, as session tokens do not).
Redirect URIs match exactly, character for character (no prefixes, no wildcards); a client asks
only for scopes its registration allows, else the request fails (``invalid_scope``) rather than
being trimmed silently."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
from authlib.oauth2.rfc6749 import ClientMixin
from authlib.oauth2.rfc6749.util import scope_to_list

from cloud.auth.principal import Principal
from cloud.domain.errors import Invalid, NotFound
from cloud.domain.store import audit

Conn = psycopg.Connection[Any]
# what a platform may receive, one scope per claim group (docs/sso.md)
SCOPES = ("openid", "role", "school", "class", "locale", "offline_access")
MAX_URIS = 10


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


@dataclass
class Client(ClientMixin):  # type: ignore[misc]
    client_id: str
    name: str
    secret_hash: bytes
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    scopes: list[str]
    sector_salt: bytes
    client_metadata: dict[str, Any] = field(default_factory=dict)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None  # every request names its redirect_uri (OpenID Connect Core 3.1.2.1)

    def get_allowed_scope(self, scope: str | None) -> str | None:
        wanted = scope_to_list(scope) or []
        if "openid" not in wanted or not set(wanted) <= set(self.scopes):
            return None  # invalid_scope: never trimmed to what is allowed
        return " ".join(dict.fromkeys(wanted))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(digest(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


COLUMNS = (
    "client_id, name, secret_hash, redirect_uris, post_logout_redirect_uris, scopes, sector_salt"
)


def find(conn: Conn, client_id: str | None) -> Client | None:
    """An enabled client, or None."""
    if not client_id or len(client_id) > 64:
        return None
    row = conn.execute(
        f"SELECT {COLUMNS} FROM oidc_clients WHERE client_id = %s AND disabled_at IS NULL",
        (client_id,),
    ).fetchone()
    if row is None:
        return None
    return Client(str(row[0]), str(row[1]), bytes(row[2]), list(row[3]), list(row[4]),
                  list(row[5]), bytes(row[6]))  # fmt: skip


def check_uri(value: str, field_name: str) -> str:
    """An absolute https URI without a fragment (http only on loopback, for development)."""
    value = value.strip()
    try:
        parts = urlsplit(value)
    except ValueError:
        raise Invalid(field_name, "not a URL") from None
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise Invalid(field_name, "must be an https URL")
    if not parts.hostname or parts.fragment or "#" in value or len(value) > 500:
        raise Invalid(field_name, "must be an absolute URL without a fragment")
    if any(c.isspace() for c in value):
        raise Invalid(field_name, "must not contain spaces")
    return value


@dataclass(frozen=True)
class Registered:
    client_id: str
    secret: str  # shown once


def register(
    conn: Conn,
    actor: Principal,
    name: str,
    redirect_uris: list[str],
    post_logout_redirect_uris: list[str],
    scopes: list[str],
) -> Registered:
    """A new client; its secret is returned once and only its digest kept. Audited."""
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise Invalid("name", "1 to 100 characters")
    uris = [check_uri(u, "redirect_uris") for u in redirect_uris if u.strip()]
    logout = [check_uri(u, "post_logout_redirect_uris") for u in post_logout_redirect_uris
              if u.strip()]  # fmt: skip
    if not 1 <= len(uris) <= MAX_URIS or len(logout) > MAX_URIS:
        raise Invalid("redirect_uris", f"1 to {MAX_URIS} redirect URIs")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise Invalid("scopes", f"unknown scopes: {', '.join(unknown)}")
    chosen = ["openid", *(s for s in SCOPES if s in scopes and s != "openid")]
    client_id = secrets.token_urlsafe(18)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO oidc_clients (client_id, name, secret_hash, redirect_uris,"
        " post_logout_redirect_uris, scopes, sector_salt, created_by)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            client_id,
            name,
            digest(secret),
            list(dict.fromkeys(uris)),
            list(dict.fromkeys(logout)),
            chosen,
            secrets.token_bytes(32),
            actor.user_id,
        ),  # fmt: skip
    )
    audit(conn, actor, "create", "oidc_clients", client_id, None,
          {"name": name, "redirect_uris": uris, "post_logout_redirect_uris": logout,
           "scopes": chosen})  # fmt: skip
    return Registered(client_id, secret)


def disable(conn: Conn, actor: Principal, client_id: str) -> None:
    """No more sign-ins or tokens for the client; what it holds stops working. Audited."""
    row = conn.execute(
        "UPDATE oidc_clients SET disabled_at = now() WHERE client_id = %s"
        " AND disabled_at IS NULL RETURNING name",
        (client_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"client {client_id!r} not found")
    conn.execute(
        "UPDATE oidc_access_tokens SET revoked_at = now() WHERE client_id = %s"
        " AND revoked_at IS NULL",
        (client_id,),
    )
    conn.execute(
        "UPDATE oidc_refresh_tokens SET revoked_at = now() WHERE client_id = %s"
        " AND revoked_at IS NULL",
        (client_id,),
    )
    audit(conn, actor, "revoke", "oidc_clients", client_id, {"name": row[0]}, None)


@dataclass(frozen=True)
class Listed:
    client_id: str
    name: str
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    scopes: list[str]
    disabled: bool


def listing(conn: Conn) -> list[Listed]:
    rows = conn.execute(
        "SELECT client_id, name, redirect_uris, post_logout_redirect_uris, scopes,"
        " disabled_at IS NOT NULL FROM oidc_clients ORDER BY disabled_at NULLS FIRST, name"
    ).fetchall()
    return [Listed(str(r[0]), str(r[1]), list(r[2]), list(r[3]), list(r[4]), bool(r[5]))
            for r in rows]  # fmt: skip
