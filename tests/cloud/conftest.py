"""Fixtures for the cloud tests (on top of tests/conftest.py: database_url, topic_prefix,
mqtt_addr)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from cloud_helpers import CARD_A, CARD_B, Seed, drop_session

from cloud.domain import registry
from cloud.settings import Settings

PG_ADMIN_URL = os.environ.get("QADAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def settings(
    database_url: str, topic_prefix: str, mqtt_addr: tuple[str, int]
) -> Iterator[Settings]:
    s = Settings(
        database_url=database_url,
        mqtt_host=mqtt_addr[0],
        mqtt_port=mqtt_addr[1],
        topic_prefix=topic_prefix,
        ingest_client_id=f"ingest-{topic_prefix}",
        ingest_flush_ms=20,
    )
    yield s
    drop_session(s.mqtt_host, s.mqtt_port, s.ingest_client_id)


@pytest.fixture
def seed(database_url: str) -> Seed:
    """Two schools with one device each; Alice (CARD_A) in s1, Bob (CARD_B) in s2."""
    with psycopg.connect(database_url) as conn:
        registry.create_school(conn, "s1", "School 1", b"k" * 32)
        registry.create_school(conn, "s2", "School 2", b"q" * 32)
        registry.register_device(conn, "gate-1", "s1", "main entrance", "turnstile", "mfrc522")
        registry.register_device(conn, "gate-2", "s2", "canteen", "canteen", "pn532")
        alice = registry.add_person(conn, "s1", "student", "Alice Aliyeva")
        bob = registry.add_person(conn, "s2", "staff", "Bob Bekov")
        registry.add_card(conn, alice, CARD_A)
        registry.add_card(conn, bob, CARD_B)
    return Seed("s1", "gate-1", "s2", "gate-2", alice, bob)


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database with no schema at all (for migration tests)."""
    name = f"qadam_e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["statement", "bulk"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on both write paths: the insert statement and, from one event on, the bulk
    COPY path (D18), which gives way to the statement where it must."""
    from cloud.ingest import writer

    monkeypatch.setattr(writer, "BULK_MIN", 1 if request.param == "bulk" else 10**9)
    return str(request.param)
