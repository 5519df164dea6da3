"""Forgot password (issue #16, D28-B): a one-time link, sent by e-mail, to set a new password.

Shaped like the guardian invitations (cloud/auth/invitations.py): only the token's SHA-256 is
stored (sessions.digest), a link works once, for an hour, and only while it is the user's
newest (asking again revokes the older ones). Using it sets the password (the rules of
/password) and ends every session of the user.

Asking is throttled with the login throttle's ``limits`` storage (cloud/auth/throttle.py,
PostgreSQL): per e-mail address and per client address, whether or not the account exists,
so the throttle tells nothing about which addresses are accounts."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from limits import parse_many
from limits.strategies import FixedWindowRateLimiter

from cloud.auth import sessions
from cloud.auth.passwords import hash_password
from cloud.auth.principal import Principal, Role
from cloud.auth.throttle import LoginThrottle, PgStorage
from cloud.domain.store import audit

Conn = psycopg.Connection[Any]
TTL_S = 3600
PASSWORD_MIN = 10  # as /password, the API's user creation and the invitations
PASSWORD_MAX = 1024
# requests for one address, and from one client (a school's staff may share a NAT address)
ACCOUNT_LIMITS = parse_many("3/15 minutes;10/day")
CLIENT_LIMITS = parse_many("10/15 minutes;50/day")


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    role: Role
    locale: str | None


def account_for(conn: Conn, email: str) -> Account | None:
    """The active account with this e-mail, if any."""
    row = conn.execute(
        "SELECT id, email, role, locale FROM users WHERE email = %s AND active",
        (email.strip().lower()[:254],),
    ).fetchone()
    return None if row is None else Account(int(row[0]), str(row[1]), row[2], row[3])


def throttled(conn: Conn, throttle: LoginThrottle, email: str, client: str) -> int:
    """Count one request; the seconds to wait when it is over a limit (0: go ahead)."""
    limiter = FixedWindowRateLimiter(PgStorage(conn, lambda: throttle.clock()))
    key = email.strip().lower()[:254]
    wait = 0.0
    for items, ids in ((ACCOUNT_LIMITS, ("reset-account", key)),
                       (CLIENT_LIMITS, ("reset-client", client))):  # fmt: skip
        for item in items:
            if not limiter.hit(item, *ids):
                reset = limiter.get_window_stats(item, *ids).reset_time
                wait = max(wait, reset - throttle.clock())
    return max(1, math.ceil(wait)) if wait > 0 else 0


def create(conn: Conn, account: Account) -> str:
    """A new link's token for ``account`` (older open ones are revoked). Caller commits."""
    conn.execute(
        "UPDATE password_resets SET revoked_at = now()"
        " WHERE user_id = %s AND used_at IS NULL AND revoked_at IS NULL",
        (account.id,),
    )
    token = secrets.token_urlsafe(32)
    conn.execute(
        "INSERT INTO password_resets (token_hash, user_id, expires_at)"
        " VALUES (%s, %s, now() + make_interval(secs => %s))",
        (sessions.digest(token), account.id, TTL_S),
    )
    return token


Problem = Literal["unknown", "used", "expired", "revoked"]


@dataclass(frozen=True)
class Opened:
    problem: Problem | None
    reset_id: int | None = None
    account: Account | None = None


def open_link(conn: Conn, token: str, lock: bool = False) -> Opened:
    """What ``token`` names, without changing anything (``lock``: hold the row until the
    transaction ends, so two tabs cannot both use it)."""
    if not token or len(token) > 200:
        return Opened("unknown")
    row = conn.execute(
        "SELECT r.id, u.id, u.email, u.role, u.locale, r.used_at IS NOT NULL,"
        " r.revoked_at IS NOT NULL, r.expires_at <= now(), u.active"
        " FROM password_resets r JOIN users u ON u.id = r.user_id"
        " WHERE r.token_hash = %s" + (" FOR UPDATE OF r" if lock else ""),
        (sessions.digest(token),),
    ).fetchone()
    if row is None or not row[8]:
        return Opened("unknown")
    problem: Problem | None = (
        "used" if row[5] else "revoked" if row[6] else "expired" if row[7] else None
    )
    return Opened(problem, int(row[0]), Account(int(row[1]), str(row[2]), row[3], row[4]))


def use(conn: Conn, token: str, password: str) -> Opened:
    """Set the password from a live link, use the link up and end every session of the user.
    A link that cannot be used, or a password out of bounds, changes nothing (the answer's
    ``problem``, or ``reset_id`` None). Caller commits."""
    opened = open_link(conn, token, lock=True)
    if opened.problem is not None or opened.account is None:
        return opened
    if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        return Opened(None)
    uid = opened.account.id
    conn.execute("UPDATE users SET password_hash = %s WHERE id = %s",
                 (hash_password(password), uid))  # fmt: skip
    conn.execute("UPDATE password_resets SET used_at = now() WHERE id = %s", (opened.reset_id,))
    conn.execute(
        "UPDATE sessions SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL", (uid,)
    )
    who = Principal(user_id=uid, email=opened.account.email, role=opened.account.role)
    audit(conn, who, "update", "users", uid, None, {"password": "reset by e-mail link"})
    return opened
