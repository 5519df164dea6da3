"""Platforms' machine clients: registration (a platform admin, by `qadam platform-client`),
the client credentials grant, and the bearer tokens it issues.

Secrets and tokens are 32 random bytes kept as SHA-256 digests; a token lives
``platform_token_ttl_s`` (10 minutes by default) and carries the scopes granted when it was
issued. A disabled client's tokens stop working at once. Every token issued is audited."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from cloud.domain.errors import Invalid, NotFound

Conn = psycopg.Connection[Any]
SCOPES = ("attendance.read", "meals.read")


@dataclass(frozen=True)
class PlatformClient:
    client_id: str
    name: str
    scopes: tuple[str, ...]  # of this token (or, from authenticate, of the registration)
    schools: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"platform:{self.client_id}"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def audit(conn: Conn, client: PlatformClient, action: str, entity: str, entity_id: str,
          school_id: str | None, after: dict[str, Any]) -> None:  # fmt: skip
    """An audit row whose actor is the platform (no user acts)."""
    conn.execute(
        "INSERT INTO audit_log (actor_id, actor, action, entity, entity_id, school_id, after)"
        " VALUES (NULL, %s, %s, %s, %s, %s, %s)",
        (client.label, action, entity, entity_id, school_id, json.dumps(after)),
    )


def create(conn: Conn, name: str, schools: Sequence[str], scopes: Sequence[str]) -> tuple[str, str]:
    """Register a client: (client_id, secret); the secret is not kept and not shown again."""
    if not 1 <= len(name.strip()) <= 100:
        raise Invalid("name", "name must be 1 to 100 characters")
    chosen = sorted(set(scopes))
    if not chosen or any(s not in SCOPES for s in chosen):
        raise Invalid("scopes", f"scopes must be some of {list(SCOPES)}")
    wanted = sorted(set(schools))
    known = {str(r[0]) for r in conn.execute("SELECT id FROM schools WHERE id = ANY(%s)",
                                             (wanted,))}  # fmt: skip
    if not wanted or known != set(wanted):
        raise Invalid("schools", f"unknown schools: {sorted(set(wanted) - known) or 'none given'}")
    client_id = "pc_" + secrets.token_urlsafe(18)
    secret = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO platform_clients (client_id, name, secret_hash, scopes, schools)"
        " VALUES (%s, %s, %s, %s, %s)",
        (client_id, name.strip(), _digest(secret), chosen, wanted),
    )
    return client_id, secret


def disable(conn: Conn, client_id: str) -> None:
    cur = conn.execute(
        "UPDATE platform_clients SET disabled_at = now() WHERE client_id = %s"
        " AND disabled_at IS NULL",
        (client_id,),
    )
    if cur.rowcount == 0:
        raise NotFound(f"no enabled platform client {client_id!r}")
    conn.execute("DELETE FROM platform_tokens WHERE client_id = %s", (client_id,))


def authenticate(conn: Conn, client_id: str, secret: str) -> PlatformClient | None:
    row = conn.execute(
        "SELECT name, secret_hash, scopes, schools FROM platform_clients"
        " WHERE client_id = %s AND disabled_at IS NULL",
        (client_id,),
    ).fetchone()
    # compare a digest even for an unknown client, so timing does not tell which ids exist
    stored = bytes(row[1]) if row is not None else b"\0" * 32
    if not hmac.compare_digest(stored, _digest(secret)) or row is None:
        return None
    return PlatformClient(client_id, str(row[0]), tuple(row[2]), tuple(row[3]))


def issue_token(conn: Conn, client: PlatformClient, requested: Sequence[str] | None,
                ttl_s: int) -> tuple[str, list[str]]:  # fmt: skip
    """A bearer token for the requested scopes (all the client's when none are asked for).
    Invalid("scope") when a scope is asked for that the registration does not allow."""
    scopes = sorted(set(requested)) if requested else sorted(client.scopes)
    refused = [s for s in scopes if s not in client.scopes]
    if refused:
        raise Invalid("scope", f"scopes not allowed for this client: {refused}")
    token = secrets.token_urlsafe(32)
    conn.execute("DELETE FROM platform_tokens WHERE expires_at < now() - interval '1 day'")
    conn.execute(
        "INSERT INTO platform_tokens (token_hash, client_id, scopes, expires_at)"
        " VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
        (_digest(token), client.client_id, scopes, ttl_s),
    )
    audit(conn, client, "login", "platform_clients", client.client_id, None, {"scopes": scopes})
    return token, scopes


def for_token(conn: Conn, token: str) -> PlatformClient | None:
    """The client and scopes of a live token of an enabled client, or None."""
    row = conn.execute(
        "SELECT c.client_id, c.name, t.scopes, c.schools FROM platform_tokens t"
        " JOIN platform_clients c ON c.client_id = t.client_id"
        " WHERE t.token_hash = %s AND t.expires_at > now() AND c.disabled_at IS NULL",
        (_digest(token),),
    ).fetchone()
    if row is None:
        return None
    return PlatformClient(str(row[0]), str(row[1]), tuple(row[2]), tuple(row[3]))
