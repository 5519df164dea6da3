"""Cutting an ingest writer's database connection that stopped answering (D29-D).

A database machine that freezes (a hung VM, a kernel stuck on its disk) keeps its TCP
connections open and its kernel even acknowledges what we send, so neither keepalives nor the
TCP user timeout (cloud/db/conn.py) end a COMMIT waiting on it. After the failover the writer
would wait on the old primary forever while its inbox fills and the boards' acks stop.

So each writer marks when a database step starts and ends, and one watchdog thread per writer
shuts down the socket of a step older than ``ingest_db_stall_s``: libpq reports the connection
lost, and the writer retries the batch on a new connection, which libpq opens on the new
primary. A legitimately slow step that is cut is only retried (the database dedupes); nothing
is acked that was not committed.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg


def shut_down(conn: psycopg.Connection[Any]) -> None:
    """Shut the connection's socket down (both ways), so a thread blocked on it wakes with an
    error. Through a duplicate descriptor: the connection still owns and closes its own."""
    try:
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    except (OSError, psycopg.Error):
        return  # already closed
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


class StallWatch:
    """One writer's watchdog. ``attach``/``detach`` the connection it may cut (detach before
    closing it: the cut happens under the same lock, so it never hits a reused descriptor);
    wrap each database step in ``step()``; run ``run()`` on a thread of its own."""

    def __init__(
        self, stall_s: float, stopping: threading.Event, on_cut: Callable[[float], None]
    ) -> None:
        self.stall_s = stall_s
        self._stopping = stopping
        self._on_cut = on_cut
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._since: float | None = None

    @property
    def enabled(self) -> bool:
        return self.stall_s > 0

    def attach(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            self._conn = conn

    def detach(self) -> None:
        with self._lock:
            self._conn = None

    @contextmanager
    def step(self) -> Iterator[None]:
        with self._lock:
            self._since = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._since = None

    def run(self) -> None:
        period = min(1.0, self.stall_s / 4)
        while not self._stopping.wait(period):
            with self._lock:
                since, conn = self._since, self._conn
                if since is None or conn is None:
                    continue
                waited = time.monotonic() - since
                if waited < self.stall_s:
                    continue
                self._since = None  # one cut per step
                shut_down(conn)
            self._on_cut(waited)
