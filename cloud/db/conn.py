"""Connection helper (plain psycopg 3 connections) and the checks of the database URLs.

A replicated store (D29-D) is reached through one libpq URL naming every node,
``postgresql://a:5432,b:5432/qadam?target_session_attrs=read-write``: libpq tries the hosts in
turn and keeps the one that accepts writes, so a process that lost its connection in a failover
finds the new primary on its next connect, without a restart or a new setting.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

CONNECT_TIMEOUT_S = 5
# target_session_attrs that only ever connect to a server that accepts writes
WRITABLE_ATTRS = frozenset({"read-write", "primary"})
# every value libpq 14+ knows
SESSION_ATTRS = WRITABLE_ATTRS | {"any", "read-only", "standby", "prefer-standby"}
# A database machine that dies sends no RST: a connection waiting on it (the ingest in a COMMIT,
# an idle pooled connection) would hang until the kernel gives up, ~15 min with Linux's
# tcp_retries2, and no failover would reach it. With these, data unacknowledged for 15 s or an
# idle peer silent to 3 keepalive probes (10 s + 3 x 5 s) ends the connection, and the next
# connect finds the new primary. A value in the URL wins; Unix sockets ignore them.
TCP_DEFAULTS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # ms
}


def with_tcp_defaults(url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` plus the TCP_DEFAULTS that neither ``url`` nor ``kwargs`` set."""
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = {}  # psycopg.connect reports it
    return {**{k: v for k, v in TCP_DEFAULTS.items() if k not in given}, **kwargs}


def hosts_of(url: str) -> list[str]:
    """The hosts a libpq URL or key=value string names (several for a replicated store).
    ValueError when it is not a connection string libpq reads."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise ValueError(f"not a PostgreSQL connection string ({detail})") from None
    attrs = params.get("target_session_attrs")
    if attrs is not None and attrs not in SESSION_ATTRS:
        raise ValueError(f"target_session_attrs={attrs} is not one libpq knows")
    host = str(params.get("host") or params.get("hostaddr") or "")
    return host.split(",") if host else []


def check_write_url(url: str) -> str:
    """The URL writes use: with several hosts it must ask for the primary, or a process could
    stay on a standby after a failover (and every write fail) or, worse, pick one at start."""
    hosts = hosts_of(url)
    attrs = conninfo_to_dict(url).get("target_session_attrs")
    if len(hosts) > 1 and attrs not in WRITABLE_ATTRS:
        raise ValueError(
            f"names {len(hosts)} hosts but no target_session_attrs=read-write, so writes could"
            " reach a standby (add ?target_session_attrs=read-write)"
        )
    return url


def check_read_url(url: str) -> str:
    """The URL reads may use (a standby preferred): any connection string libpq reads."""
    hosts_of(url)
    return url


def connect(
    database_url: str, *, autocommit: bool = False, application_name: str = "qadam", **kwargs: Any
) -> psycopg.Connection[TupleRow]:
    """Open a connection with the service defaults (connect timeout, application name, TCP
    timeouts)."""
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    return psycopg.connect(
        database_url, autocommit=autocommit, application_name=application_name,
        **with_tcp_defaults(database_url, kwargs),
    )  # fmt: skip


def close_quietly(conn: psycopg.Connection[Any] | None) -> None:
    """Close ``conn`` if there is one, ignoring errors: it is being dropped, usually because it
    already broke."""
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass
