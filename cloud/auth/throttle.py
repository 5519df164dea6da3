"""Login throttling (issue #13 item 4, decision D24-D): failed logins are counted per account
and per client address with the PyPI ``limits`` library's fixed-window strategy, in tiers, so
the lockout grows with the failures (1 minute, then 15 minutes, an hour, a day).

The counters live in PostgreSQL (table ``login_throttle``, migration 0018): the API may run as
several processes or hosts, and the database is the store they all share (``limits`` ships
memory, Redis, Memcached and MongoDB backends; memory would give each process its own count,
and the others are services this project does not run). ``PgStorage`` is a ``limits`` storage
backend on the request's own connection, so a login's check, count and audit row commit (or
roll back) together. Keys are stored as SHA-256: no e-mail or address sits in the counters.

Time comes from ``clock`` (seconds since the epoch), so tests move it instead of sleeping.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from limits import RateLimitItem, parse_many
from limits.storage import Storage
from limits.strategies import FixedWindowRateLimiter

Conn = psycopg.Connection[Any]
Clock = Callable[[], float]

# Failed logins allowed per window; the next attempt is refused until that window ends.
ACCOUNT_LIMITS = "5/minute;10/15 minutes;20/hour;100/day"
# Per client address: failures and refused attempts both count (a client that ignores
# Retry-After stays refused); generous, as a school's staff may share one NAT address.
CLIENT_LIMITS = "20/minute;100/hour;300/day"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class PgStorage(Storage):
    """A ``limits`` storage backend on one PostgreSQL connection (the caller's transaction)."""

    STORAGE_SCHEME = None  # not reachable by URI: it needs the request's connection

    def __init__(self, conn: Conn, clock: Clock = time.time) -> None:
        super().__init__(None)
        self.conn = conn
        self.clock = clock

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return psycopg.Error

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self.clock()
        row = self.conn.execute(
            "INSERT INTO login_throttle AS t (key, hits, expires_at) VALUES (%s, %s, %s)"
            " ON CONFLICT (key) DO UPDATE SET"
            " hits = CASE WHEN t.expires_at <= %s THEN EXCLUDED.hits"
            " ELSE t.hits + EXCLUDED.hits END,"
            " expires_at = CASE WHEN t.expires_at <= %s THEN EXCLUDED.expires_at"
            " ELSE t.expires_at END"
            " RETURNING hits",
            (_digest(key), amount, now + expiry, now, now),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def get(self, key: str) -> int:
        row = self.conn.execute(
            "SELECT hits FROM login_throttle WHERE key = %s AND expires_at > %s",
            (_digest(key), self.clock()),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def get_expiry(self, key: str) -> float:
        now = self.clock()
        row = self.conn.execute(
            "SELECT expires_at FROM login_throttle WHERE key = %s AND expires_at > %s",
            (_digest(key), now),
        ).fetchone()
        return now if row is None else float(row[0])

    def check(self) -> bool:
        return self.conn.execute("SELECT 1").fetchone() is not None

    def reset(self) -> int | None:
        return self.conn.execute("DELETE FROM login_throttle").rowcount

    def clear(self, key: str) -> None:
        self.conn.execute("DELETE FROM login_throttle WHERE key = %s", (_digest(key),))

    def purge(self) -> None:
        """Drop counters whose window ended a day ago (the table stays the size of the
        last day's failures)."""
        self.conn.execute(
            "DELETE FROM login_throttle WHERE expires_at < %s", (self.clock() - 86400,)
        )


@dataclass
class LoginThrottle:
    """The limits and the clock; ``bind(conn)`` gives the per-request view."""

    account_limits: str = ACCOUNT_LIMITS
    client_limits: str = CLIENT_LIMITS
    clock: Clock = time.time

    def __post_init__(self) -> None:
        self.account_items: list[RateLimitItem] = parse_many(self.account_limits)
        self.client_items: list[RateLimitItem] = parse_many(self.client_limits)

    def bind(self, conn: Conn) -> BoundThrottle:
        return BoundThrottle(self, conn)


class BoundThrottle:
    def __init__(self, throttle: LoginThrottle, conn: Conn) -> None:
        self.t = throttle
        self.conn = conn
        self.storage = PgStorage(conn, lambda: throttle.clock())
        self.limiter = FixedWindowRateLimiter(self.storage)

    def lock_account(self, account: str) -> None:
        """Serialise the attempts on one account until the transaction ends (the check and the
        count of a burst of parallel guesses cannot interleave)."""
        self.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", ("qadam-login:" + account,)
        )

    def _wait(self, items: list[RateLimitItem], *ids: str) -> int:
        now = self.t.clock()
        wait = 0.0
        for item in items:
            if not self.limiter.test(item, *ids):
                reset = self.limiter.get_window_stats(item, *ids).reset_time
                wait = max(wait, reset - now)
        return max(1, math.ceil(wait)) if wait > 0 else 0

    def retry_after(self, account: str, client: str) -> int:
        """Seconds until a login for ``account`` from ``client`` is let through; 0: now."""
        return max(
            self._wait(self.t.account_items, "login-account", account),
            self._wait(self.t.client_items, "login-client", client),
        )

    def refused(self, client: str) -> None:
        for item in self.t.client_items:
            self.limiter.hit(item, "login-client", client)

    def failed(self, account: str | None, client: str) -> None:
        self.storage.purge()
        if account is not None:
            for item in self.t.account_items:
                self.limiter.hit(item, "login-account", account)
        self.refused(client)

    def succeeded(self, account: str) -> None:
        """A right password resets the account's failures (not the client's: one good account
        must not buy an address more guesses at others)."""
        for item in self.t.account_items:
            self.limiter.clear(item, "login-account", account)


def record_attempt(
    conn: Conn,
    email: str,
    client: str,
    user_id: int | None,
    outcome: str,
    retry_after_s: int | None = None,
) -> None:
    """The audit log of failed and refused logins (table ``login_attempts``)."""
    conn.execute(
        "INSERT INTO login_attempts (email, client, user_id, outcome, retry_after_s)"
        " VALUES (%s, %s, %s, %s, %s)",
        (email[:254], client[:64], user_id, outcome, retry_after_s),
    )
