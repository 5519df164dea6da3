"""A person's consent to a platform receiving the claims of some scopes, and what guardians
see of it: the platforms their child signed in to, and when last. Also the check of an
``id_token_hint`` at sign-out (our own signature; an expired token is still a hint)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from cloud.auth.principal import Principal
from cloud.domain.store import audit
from cloud.oidc import keys

Conn = psycopg.Connection[Any]


def covers(conn: Conn, user_id: int | None, client_id: str, scopes: list[str]) -> bool:
    row = conn.execute(
        "SELECT scopes @> %s FROM oidc_consents WHERE user_id = %s AND client_id = %s",
        (scopes, user_id, client_id),
    ).fetchone()
    return bool(row and row[0])


def grant(conn: Conn, user: Principal, client_id: str, scopes: list[str]) -> None:
    """Record (or widen) the consent; audited as the person's own act."""
    before = conn.execute(
        "SELECT scopes FROM oidc_consents WHERE user_id = %s AND client_id = %s",
        (user.user_id, client_id),
    ).fetchone()
    conn.execute(
        "INSERT INTO oidc_consents (user_id, client_id, scopes) VALUES (%s, %s, %s)"
        " ON CONFLICT (user_id, client_id) DO UPDATE SET granted_at = now(),"
        " scopes = ARRAY(SELECT DISTINCT unnest(oidc_consents.scopes || EXCLUDED.scopes))",
        (user.user_id, client_id, scopes),
    )
    audit(conn, user, "create" if before is None else "update", "oidc_consents",
          f"{user.user_id}:{client_id}", None if before is None else {"scopes": before[0]},
          {"client_id": client_id, "scopes": scopes})  # fmt: skip


def used(conn: Conn, user_id: int, client_id: str) -> None:
    conn.execute(
        "UPDATE oidc_consents SET last_used_at = now() WHERE user_id = %s AND client_id = %s",
        (user_id, client_id),
    )


@dataclass(frozen=True)
class Used:
    platform: str
    granted_at: datetime
    last_used_at: datetime
    client_id: str = ""


def platforms_of_person(conn: Conn, person_id: int) -> list[Used]:
    """The platforms a pupil's own account consented to (guardians see them, issue #17)."""
    rows = conn.execute(
        "SELECT c.name, o.granted_at, o.last_used_at, c.client_id FROM student_accounts a"
        " JOIN oidc_consents o ON o.user_id = a.user_id"
        " JOIN oidc_clients c ON c.client_id = o.client_id"
        " WHERE a.person_id = %s ORDER BY o.last_used_at DESC",
        (person_id,),
    ).fetchall()
    return [Used(str(r[0]), r[1], r[2], str(r[3])) for r in rows]


def withdraw_for_child(conn: Conn, guardian: Principal, person_id: int, client_id: str) -> bool:
    """A guardian withdraws their child's consent to a platform: the consent is deleted and
    every token the platform holds for the child's account is revoked, so the platform gets
    nothing more until the child agrees again. Audited. False: nothing to withdraw (or not
    their child)."""
    row = conn.execute(
        "DELETE FROM oidc_consents o USING student_accounts a, guardian_students g"
        " WHERE o.user_id = a.user_id AND a.person_id = %s AND o.client_id = %s"
        " AND g.person_id = a.person_id AND g.guardian_id = %s RETURNING o.user_id, o.scopes",
        (person_id, client_id, guardian.user_id),
    ).fetchone()
    if row is None:
        return False
    for table in ("oidc_access_tokens", "oidc_refresh_tokens"):
        conn.execute(
            f"UPDATE {table} SET revoked_at = now() WHERE user_id = %s AND client_id = %s"  # noqa: S608
            " AND revoked_at IS NULL",
            (row[0], client_id),
        )
    audit(conn, guardian, "withdraw", "oidc_consents", f"{row[0]}:{client_id}",
          {"person_id": person_id, "client_id": client_id, "scopes": row[1]}, None)  # fmt: skip
    return True


@dataclass(frozen=True)
class Hint:
    client_id: str
    sub: str


def check_hint(conn: Conn, token: str, issuer: str) -> Hint | None:
    """An ID token we signed (with a key still published) for this issuer, else None."""
    try:
        key_set = KeySet.import_key_set(keys.jwks(conn))  # type: ignore[arg-type]
        decoded = jwt.decode(token, key_set, algorithms=[keys.ALG])
    except (JoseError, ValueError):
        return None
    c = decoded.claims
    aud = c.get("aud")
    client_id = aud[0] if isinstance(aud, list) and len(aud) == 1 else aud
    if (
        c.get("iss") != issuer
        or not isinstance(client_id, str)
        or not isinstance(c.get("sub"), str)
    ):
        return None
    return Hint(client_id, c["sub"])
