"""Shared fixtures: a fresh PostgreSQL database per test (cloned from a migrated template) and a
unique MQTT topic prefix per test, so tests run in parallel on one server and one broker."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from auth_tokens import make_admin_token

REPO = Path(__file__).resolve().parent.parent
MIGRATIONS = REPO / "cloud" / "db" / "migrations"

PG_ADMIN_URL = os.environ.get("QADAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MQTT_HOST = os.environ.get("QADAM_TEST_MQTT_HOST", "127.0.0.1")
MQTT_PORT = int(os.environ.get("QADAM_TEST_MQTT_PORT", "1883"))
# The API's rate limits (issue #19) are off for the suite: its tests send a client's requests
# faster than any person does. tests/cloud/test_api_overload.py sets them and tests them.
os.environ.setdefault("QADAM_API_RATE_CLIENT", "")
os.environ.setdefault("QADAM_API_RATE_ACCOUNT", "")


def _url_for(dbname: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname


def _migrations_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


@pytest.fixture(scope="session")
def db_template() -> str:
    """Name of a template database with every migration applied (built once, shared by workers)."""
    from cloud.db.migrate import apply

    name = f"qadam_tpl_{_migrations_digest()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        # Serialise template creation across xdist workers.
        admin.execute("SELECT pg_advisory_lock(4242)")
        try:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if not exists:
                building = name + "_build"
                admin.execute(f'DROP DATABASE IF EXISTS "{building}"')
                admin.execute(f'CREATE DATABASE "{building}"')
                apply(_url_for(building))
                admin.execute(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
                admin.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true')
        finally:
            admin.execute("SELECT pg_advisory_unlock(4242)")
    return name


@pytest.fixture
def database_url(db_template: str) -> Iterator[str]:
    """URL of a fresh database for this test, cloned from the migrated template; dropped after."""
    name = f"qadam_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{db_template}"')
    try:
        yield _url_for(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def topic_prefix() -> str:
    """A topic prefix no other test uses, so tests share the broker without seeing each other."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def mqtt_addr() -> tuple[str, int]:
    return MQTT_HOST, MQTT_PORT


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir outside pytest's per-user base dir. The embedded PostgreSQL runs as its own
    system user and needs to traverse the parents of its data dir; pytest keeps
    /tmp/pytest-of-<user> private (0700) and resets that whenever another pytest session starts."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="qadam-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def admin_headers(database_url: str) -> dict[str, str]:
    """``Authorization`` of a platform admin for this test's database (reads every event)."""
    return {"Authorization": f"Bearer {make_admin_token(database_url)}"}


@pytest.fixture
def insecure_dev_env() -> dict[str, str]:
    """The environment a test gives a process it starts against the machine's open broker
    (anonymous Mosquitto on 1883): without it a production start refuses (cloud/startup.py).
    Explicit per test, so the refusal itself is tested without it."""
    return {"QADAM_INSECURE_DEV": "1"}
