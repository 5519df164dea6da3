"""The platforms a school enabled, and where a pupil's launch opens them (issue #17 part 1,
D29-F). A launch URL is the platform's own "sign in with qadam" address: the platform starts
an authorization request, and the pupil, already signed in to the app, comes back signed in
(after agreeing once to what the platform receives)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from cloud.auth.principal import Principal
from cloud.domain.errors import Invalid, NotFound
from cloud.domain.store import audit
from cloud.oidc.clients import check_uri

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class Launch:
    client_id: str
    name: str
    url: str
    school_id: str = ""


def for_school(conn: Conn, school_id: str) -> list[Launch]:
    rows = conn.execute(
        "SELECT c.client_id, c.name, s.launch_url, s.school_id FROM oidc_client_schools s"
        " JOIN oidc_clients c ON c.client_id = s.client_id"
        " WHERE s.school_id = %s AND c.disabled_at IS NULL ORDER BY c.name",
        (school_id,),
    ).fetchall()
    return [Launch(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def every(conn: Conn) -> list[Launch]:
    rows = conn.execute(
        "SELECT c.client_id, c.name, s.launch_url, s.school_id FROM oidc_client_schools s"
        " JOIN oidc_clients c ON c.client_id = s.client_id"
        " WHERE c.disabled_at IS NULL ORDER BY s.school_id, c.name"
    ).fetchall()
    return [Launch(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def enable(conn: Conn, actor: Principal, client_id: str, school_id: str, url: str) -> None:
    """List the platform in the school's Learning tab (or change its launch URL). Audited."""
    url = check_uri(url, "launch_url")
    known = conn.execute(
        "SELECT (SELECT 1 FROM oidc_clients WHERE client_id = %s AND disabled_at IS NULL),"
        " (SELECT 1 FROM schools WHERE id = %s)",
        (client_id, school_id),
    ).fetchone()
    if known is None or known[0] is None:
        raise NotFound(f"client {client_id!r} not found")
    if known[1] is None:
        raise Invalid("school_id", "no such school")
    conn.execute(
        "INSERT INTO oidc_client_schools (client_id, school_id, launch_url) VALUES (%s, %s, %s)"
        " ON CONFLICT (client_id, school_id) DO UPDATE SET launch_url = EXCLUDED.launch_url",
        (client_id, school_id, url),
    )
    audit(conn, actor, "link", "oidc_client_schools", f"{client_id}:{school_id}", None,
          {"client_id": client_id, "school_id": school_id, "launch_url": url})  # fmt: skip


def disable(conn: Conn, actor: Principal, client_id: str, school_id: str) -> None:
    row = conn.execute(
        "DELETE FROM oidc_client_schools WHERE client_id = %s AND school_id = %s"
        " RETURNING launch_url",
        (client_id, school_id),
    ).fetchone()
    if row is None:
        raise NotFound("not enabled for that school")
    audit(conn, actor, "unlink", "oidc_client_schools", f"{client_id}:{school_id}",
          {"client_id": client_id, "school_id": school_id, "launch_url": row[0]}, None)  # fmt: skip
