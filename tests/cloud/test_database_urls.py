"""The database URLs of a replicated store (D29-D): several hosts only with
target_session_attrs=read-write for writes; a read URL that prefers a standby; bad URLs refused
at start-up with one line naming the variable, never echoing the URL (it may hold a password)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cloud.db.conn import check_write_url, hosts_of
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
