"""A per-process cache of bearer-token lookups (issue #19, D27-D).

Each request's token lookup is a query (sessions join users); in a burst the same parent's app
sends several requests in a row. ``TokenCache.principal(conn, token)`` answers from memory for
at most ``ttl_s`` (and never past the session's expiry), else reads the database and keeps the
answer. Only live sessions are kept: an unknown or revoked token is read from the database
each time.

What would make a kept answer wrong is a change of the session or the user: a logout, a
revocation, a deactivated account, a new role or school. Migration 0025 has PostgreSQL send a
NOTIFY on channel ``qadam_auth`` for each (``s:<token hash hex>`` or ``u:<user id>``), after the
change commits; ``Invalidator`` (a thread with its own connection) LISTENs and drops what it
names, and a logout drops its own token at once in its process. While the listener is not
connected the cache is bypassed, so no notice can be missed; a lookup that raced a change (read
before, stored after) is not stored (``generation``).

Usable by any part of the service that resolves tokens (the console's session cookies too).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from prometheus_client import Counter

from cloud.auth.principal import Principal
from cloud.auth.sessions import digest, lookup

log = logging.getLogger("qadam.auth")

CHANNEL = "qadam_auth"
MAX_ENTRIES = 100_000  # ~300 B each: memory stays bounded whatever the traffic
RECONNECT_S = 2.0

Clock = Callable[[], float]

LOOKUPS = Counter(
    "qadam_api_auth_cache_total", "Bearer token lookups, from the cache or the database", ["result"]
)
HITS, MISSES = LOOKUPS.labels("hit"), LOOKUPS.labels("miss")


class TokenCache:
    def __init__(self, ttl_s: float, clock: Clock = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.live = False  # set by the Invalidator while it listens
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[Principal, float]] = {}
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self.live and self.ttl_s > 0

    def principal(
        self, conn: psycopg.Connection[Any], token: str, fresh: bool = False
    ) -> Principal | None:
        """The user of a live token, from the cache or the database (then kept). ``fresh``:
        read the database, and drop what was kept (the API does so for every request that
        may write, a logout among them, so the next read after it is fresh too)."""
        if not token or len(token) > 200:
            return None
        key = digest(token)
        if fresh:
            self.drop(key)
            MISSES.inc()
            found = lookup(conn, key)
            return None if found is None else found[0]
        with self._lock:
            entry = self._entries.get(key) if self.enabled else None
            generation = self._generation
        if entry is not None and entry[1] > self.clock():
            HITS.inc()
            return entry[0]
        MISSES.inc()
        found = lookup(conn, key)
        if found is None:
            return None
        principal, expires_in_s = found
        if self.enabled:
            self._store(key, principal, min(self.ttl_s, expires_in_s), generation)
        return principal

    def _store(self, key: bytes, principal: Principal, ttl_s: float, generation: int) -> None:
        with self._lock:
            if generation != self._generation or ttl_s <= 0:
                return  # something changed since the read began: it may be stale
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (principal, self.clock() + ttl_s)

    def drop_token(self, token: str) -> None:
        self.drop(digest(token))

    def drop(self, key: bytes) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(key, None)

    def drop_user(self, user_id: int) -> None:
        with self._lock:
            self._generation += 1
            for key in [k for k, (p, _) in self._entries.items() if p.user_id == user_id]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    def notice(self, payload: str) -> None:
        """Apply one ``qadam_auth`` notification."""
        kind, _, value = payload.partition(":")
        try:
            if kind == "s":
                self.drop(bytes.fromhex(value))
                return
            if kind == "u":
                self.drop_user(int(value))
                return
        except ValueError:
            pass
        self.clear()  # not understood: drop everything rather than keep something stale

    def __len__(self) -> int:
        return len(self._entries)


class Invalidator(threading.Thread):
    """LISTENs on ``qadam_auth`` and applies the notices to ``cache``; reconnects after a loss
    (the cache is cleared and bypassed meanwhile)."""

    def __init__(self, cache: TokenCache, database_url: str) -> None:
        super().__init__(name="qadam-auth-invalidator", daemon=True)
        self.cache = cache
        self.database_url = database_url
        self.stopping = threading.Event()
        self.listening = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(
                    self.database_url, autocommit=True, connect_timeout=5,
                    application_name="qadam-api-auth-listen",
                ) as conn:  # fmt: skip
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.cache.clear()  # what changed while nobody listened
                    self.cache.live = True
                    self.listening.set()
                    while not self.stopping.is_set():
                        for n in conn.notifies(timeout=1.0):
                            self.cache.notice(n.payload)
            except psycopg.Error as e:
                log.warning("token cache listener lost error=%s; cache bypassed", type(e).__name__)
            finally:
                self.cache.live = False
                self.listening.clear()
                self.cache.clear()
            self.stopping.wait(RECONNECT_S)

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
