"""Connection helper (plain psycopg 3 connections; no pool yet)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import TupleRow

CONNECT_TIMEOUT_S = 5


def connect(
    database_url: str, *, autocommit: bool = False, application_name: str = "qadam", **kwargs: Any
) -> psycopg.Connection[TupleRow]:
    """Open a connection with the service defaults (connect timeout, application name)."""
    kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    return psycopg.connect(
        database_url, autocommit=autocommit, application_name=application_name, **kwargs
    )


def close_quietly(conn: psycopg.Connection[Any] | None) -> None:
    """Close ``conn`` if there is one, ignoring errors: it is being dropped, usually because it
    already broke."""
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass
