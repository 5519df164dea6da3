"""Pooled PostgreSQL connections for the API (issue #19, D27-D).

Before the pool every request opened its own connection: a burst of parents ran PostgreSQL out
of connections and the set-up bounded throughput. ``Connections`` hands out one connection per
request, from a ``psycopg_pool.ConnectionPool`` sized from settings (``db_pool_size``), or, with
``db_pool_size = 0``, a fresh one as before (the bench's baseline). A request that finds the
pool busy waits at most ``db_pool_timeout_s``, then ``psycopg_pool.PoolTimeout`` is raised: the
app answers it with 503 and Retry-After (cloud/api/overload.py), never a raw database error.

Statements are prepared on their ``db_prepare_after``-th execution on a connection and reused
for its lifetime (psycopg's ``prepare_threshold``); 0 turns that off for PgBouncer in
transaction mode.

Replicated store (D29-D): the URL may name every node with ``target_session_attrs``. After a
failover the pool's connections to the old primary are broken; each is handed out once more,
fails (the app answers 503 + Retry-After), and is replaced, through libpq's host list, by one to
the new primary: no restart. ``Connections(..., read=True)`` uses ``database_read_url`` (a
standby preferred) for reads that may lag a little; without one it is the write URL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from cloud.db.conn import CONNECT_TIMEOUT_S, connect, with_tcp_defaults
from cloud.settings import Settings

# Connections opened before the first request, and kept when idle (the rest close after
# MAX_IDLE_S): a quiet API holds few, a burst grows the pool to db_pool_size.
MIN_SIZE = 2
MAX_IDLE_S = 300.0


def prepare_threshold(settings: Settings) -> int | None:
    """psycopg's ``prepare_threshold`` (executions before preparing; None = never)."""
    return None if settings.db_prepare_after == 0 else settings.db_prepare_after - 1


class Connections:
    """Where the API's requests get their connection: the pool, or a fresh connection each."""

    def __init__(
        self, settings: Settings, application_name: str, options: str = "", read: bool = False
    ) -> None:
        self.settings = settings
        self.read = read
        self.url = settings.read_database_url if read else settings.database_url
        self.kwargs: dict[str, Any] = with_tcp_defaults(
            self.url,
            {
                "application_name": application_name,
                "options": options,
                "connect_timeout": CONNECT_TIMEOUT_S,
                "prepare_threshold": prepare_threshold(settings),
            },
        )
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._lock = threading.Lock()

    @property
    def pooled(self) -> bool:
        return self.settings.db_pool_size > 0

    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """The pool, opened on first use (without waiting for the database: a request that
        comes while it is down waits its timeout and gets 503)."""
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    size = self.settings.db_pool_size
                    pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                        self.url,
                        kwargs=self.kwargs,
                        min_size=min(MIN_SIZE, size),
                        max_size=size,
                        timeout=self.settings.db_pool_timeout_s,
                        max_idle=MAX_IDLE_S,
                        name="qadam-api-read" if self.read else "qadam-api",
                        open=False,
                    )
                    pool.open(wait=False)
                    self._pool = pool
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """One connection and one transaction: committed when the block ends, rolled back when
        it raises. PoolTimeout when no pooled connection came in time."""
        if not self.pooled:
            with connect(self.url, **self.kwargs) as conn:
                yield conn
            return
        with self.pool().connection() as conn:
            yield conn

    def stats(self) -> dict[str, int]:
        """The pool's gauges (psycopg_pool's names: pool_size, pool_available, requests_waiting,
        ...); empty before the pool is opened or without one."""
        return dict(self._pool.get_stats()) if self._pool is not None else {}

    def close(self) -> None:
        """Close the pool's connections (the app's shutdown); a later request opens it again."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(timeout=5)
