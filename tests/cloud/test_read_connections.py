"""Reads that may lag go where ``database_read_url`` points (D29-D): the report downloads and the
live cross-check read there, the scope check and every write stay on the primary; without a read
URL they share the primary's pool; and the read transaction refuses writes even on the primary.

A standby is stood in for by a copy of the test database made before the primary changes: what
the route answers tells which of the two it read."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from auth_tokens import make_admin_token
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.api.deps import get_read_conn
from cloud.domain import registry
from cloud.settings import Settings
from tests.conftest import PG_ADMIN_URL

CROSSCHECK = "/api/v1/reports/schools/s1/crosscheck?month=2026-11"


@pytest.fixture
def standby_url(database_url: str) -> Iterator[str]:
    """A copy of the test database as it is now; the test's database changes after it."""
    with psycopg.connect(database_url) as conn:
        registry.create_school(conn, "s1", "Before the change", b"k" * 32)
    source = database_url.rsplit("/", 1)[1]
    name = f"qadam_r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE schools SET name = 'After the change' WHERE id = 's1'")
    try:
        yield database_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _crosscheck_school_name(settings: Settings, database_url: str) -> str:
    headers = {"Authorization": f"Bearer {make_admin_token(database_url)}"}
    with TestClient(create_app(settings)) as client:
        r = client.get(CROSSCHECK, headers=headers)
        assert r.status_code == 200, r.text
        return str(r.json()["content"]["school"]["name"])


def test_report_reads_go_to_the_read_url(database_url: str, standby_url: str) -> None:
    settings = Settings(database_url=database_url, database_read_url=standby_url)
    assert _crosscheck_school_name(settings, database_url) == "Before the change"


def test_without_a_read_url_reads_share_the_primary(database_url: str, standby_url: str) -> None:
    settings = Settings(database_url=database_url)
    app = create_app(settings)
    assert app.state.read_connections is app.state.connections  # one pool, not two
    assert _crosscheck_school_name(settings, database_url) == "After the change"


def test_the_scope_check_stays_on_the_primary(database_url: str, standby_url: str) -> None:
    # made after the copy, s2 is on the primary only: the scope check passes and the read, on
    # the standby, finds nothing; s3, written into the standby only, never passes the check
    with psycopg.connect(database_url) as conn:
        registry.create_school(conn, "s2", "Primary only", b"k" * 32)
    with psycopg.connect(standby_url) as conn:
        registry.create_school(conn, "s3", "Standby only", b"k" * 32)
    headers = {"Authorization": f"Bearer {make_admin_token(database_url)}"}
    settings = Settings(database_url=database_url, database_read_url=standby_url)
    with TestClient(create_app(settings)) as client:
        lagging = client.get(CROSSCHECK.replace("s1", "s2"), headers=headers)
        stranger = client.get(CROSSCHECK.replace("s1", "s3"), headers=headers)
        both = client.get(CROSSCHECK, headers=headers)
    assert lagging.status_code == 404 and "'s2' not found" in lagging.text, lagging.text
    assert stranger.status_code == 404 and "'s3' not found" in stranger.text, stranger.text
    assert both.status_code == 200, both.text


def test_the_read_transaction_refuses_writes(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url))
    request = type("Request", (), {"app": app})()
    reads = get_read_conn(request)
    conn = next(reads)
    try:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO districts (name) VALUES ('Written by a read')")
    finally:
        reads.close()
        app.state.connections.close()
    with psycopg.connect(database_url) as check:
        assert check.execute(
            "SELECT count(*) FROM districts WHERE name = 'Written by a read'"
        ).fetchone() == (0,)
