"""The database URLs of a replicated store (D29-D): several hosts only with
target_session_attrs=read-write for writes; a read URL that prefers a standby; bad URLs refused
at start-up with one line naming the variable, never echoing the URL (it may hold a password);
TCP timeouts on every connection, so one to a dead machine ends."""

from __future__ import annotations

import os
import socket
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from cloud.db.conn import check_write_url, connect, hosts_of
from cloud.db.pool import Connections
from cloud.settings import Settings, describe_errors

TWO = "postgresql://qadam:secret@db1:5432,db2:5432/qadam"


def test_one_host_needs_nothing_more() -> None:
    s = Settings(database_url="postgresql://postgres@127.0.0.1:5432/qadam")
    assert s.read_database_url == s.database_url  # no read URL: reads use the write URL


def test_several_hosts_take_writes_only_on_the_primary() -> None:
    url = TWO + "?target_session_attrs=read-write"
    read = "host=db1,db2 port=5432,5432 dbname=qadam target_session_attrs=prefer-standby"
    s = Settings(database_url=url, database_read_url=read)
    assert (s.database_url, s.read_database_url) == (url, read)
    assert hosts_of(url) == ["db1", "db2"] and hosts_of(read) == ["db1", "db2"]
    assert check_write_url(TWO + "?target_session_attrs=primary")


NEAREST = TWO + "?target_session_attrs=nearest"


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("database_url", TWO, "QADAM_DATABASE_URL: names 2 hosts but no target_session_attrs"),
        ("database_url", TWO + "?target_session_attrs=standby", "QADAM_DATABASE_URL: names 2"),
        ("database_url", "nonsense", "QADAM_DATABASE_URL: not a PostgreSQL connection string"),
        ("database_read_url", NEAREST, "QADAM_DATABASE_READ_URL: target_session_attrs=nearest"),
        ("database_read_url", "", "QADAM_DATABASE_READ_URL: is empty"),
    ],
)
def test_unusable_urls_are_refused_in_one_line(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**{field: value})
    line = describe_errors(caught.value)
    assert line.startswith(message), line
    assert "secret" not in line and "nonsense" not in line.split("(")[0]


def _tcp_options(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int, int]:
    """What the kernel holds for the connection's socket (libpq applied the settings)."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))  # a duplicate descriptor
    try:
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )
    finally:
        sock.close()  # closes our duplicate only


def test_connections_end_when_a_dead_server_stops_answering(database_url: str) -> None:
    """A dead machine sends no RST: keepalives and a TCP user timeout on every connection (ours
    and the API pool's) end the wait, so the process reconnects to the new primary."""
    assert database_url.startswith("postgresql://") and "@127.0.0.1:" in database_url  # TCP
    with connect(database_url) as conn:
        assert _tcp_options(conn) == (1, 10, 5, 3, 15_000)
    pool = Connections(Settings(database_url=database_url), "qadam-test-tcp")
    try:
        with pool.connection() as conn:
            assert _tcp_options(conn) == (1, 10, 5, 3, 15_000)
    finally:
        pool.close()
    # the URL's own values win
    with connect(database_url + "?tcp_user_timeout=3000&keepalives_idle=30") as conn:
        assert _tcp_options(conn) == (1, 30, 5, 3, 3_000)
