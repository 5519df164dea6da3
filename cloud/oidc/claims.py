"""What a relying party learns about a user: a pairwise ``sub`` and the claims of the scopes its
registration allows and the user consented to.

``sub`` is HMAC-SHA256(client's sector salt, user id), base64url: stable for one platform,
unrelated across platforms, so two platforms cannot join their users by it. Claims are few on
purpose (minors' data): role, school, class and grade, locale; no name, e-mail or birth date."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

import psycopg

from cloud.oidc.clients import Client

Conn = psycopg.Connection[Any]
# scope -> the claims it releases (docs/sso.md)
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": ("sub",),
    "role": ("role",),
    "school": ("school_id", "school_name"),
    "class": ("class", "grade"),
    "locale": ("locale",),
}
DEFAULT_LOCALE = "kk"


@dataclass(frozen=True)
class Subject:
    """The user a credential was issued for, with the client it was issued to."""

    user_id: int
    client: Client


def pairwise_sub(client: Client, user_id: int) -> str:
    mac = hmac.new(client.sector_salt, f"user:{user_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _grade(name: str, grade: int | None) -> int | None:
    if grade is not None:
        return grade
    m = re.match(r"\s*(\d{1,2})", name)  # "5A", "11 Б"
    return int(m.group(1)) if m and 0 <= int(m.group(1)) <= 12 else None


def user_claims(conn: Conn, subject: Subject, scope: str) -> dict[str, Any]:
    """The claims of ``scope`` for the user (absent facts are left out, never guessed)."""
    scopes = set(scope.split())
    out: dict[str, Any] = {"sub": pairwise_sub(subject.client, subject.user_id)}
    row = conn.execute(
        "SELECT u.role, u.school_id, s.name, u.locale FROM users u"
        " LEFT JOIN schools s ON s.id = u.school_id WHERE u.id = %s",
        (subject.user_id,),
    ).fetchone()
    if row is None:
        return out
    role, school_id, school_name, locale = row
    if "role" in scopes:
        out["role"] = role
    if "school" in scopes and school_id is not None:
        out["school_id"], out["school_name"] = school_id, school_name
    if "class" in scopes and role == "student":
        klass = conn.execute(
            "SELECT c.name, c.grade FROM student_accounts a JOIN people pe ON pe.id = a.person_id"
            " JOIN classes c ON c.id = pe.class_id WHERE a.user_id = %s AND pe.active",
            (subject.user_id,),
        ).fetchone()
        if klass is not None:
            out["class"] = klass[0]
            grade = _grade(str(klass[0]), klass[1])
            if grade is not None:
                out["grade"] = grade
    if "locale" in scopes:
        out["locale"] = locale or DEFAULT_LOCALE
    return out


def user_is_active(conn: Conn, user_id: int) -> bool:
    row = conn.execute("SELECT active FROM users WHERE id = %s", (user_id,)).fetchone()
    return bool(row and row[0])
