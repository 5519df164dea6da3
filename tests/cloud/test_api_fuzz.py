"""Schema-based fuzzing: schemathesis generates requests from the app's own OpenAPI document
(valid and invalid bodies, paths, queries) and sends them in-process, authenticated as a
platform admin, against a fresh populated database. No input may produce a 5xx, and every
documented response must match its schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import schemathesis
from api_world import build, login
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
)

from cloud.api.app import create_app
from cloud.settings import Settings

MAX_EXAMPLES = 10
PG_ADMIN_URL = os.environ.get("QADAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


# The schema is read once from an app object; each generated test points that app at its own
# fresh database (get_app_settings reads app.state.settings per request).
APP = create_app(Settings(database_url="postgresql://unused@127.0.0.1:1/none", auth_required=True))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module")
def fuzz_db(db_template: str) -> Iterator[str]:
    """One populated database for the whole module (a fresh one per test would cost more than
    the fuzzing itself); dropped at the end."""
    name = f"qadam_f_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{db_template}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        build(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def token(fuzz_db: str) -> str:
    APP.state.settings = Settings(database_url=fuzz_db, auth_required=True)
    with TestClient(APP) as c:
        return login(c, "root@qadam.kz")


@schema.exclude(path="/api/v1/auth/logout").parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: Any, token: str) -> None:
    case.call_and_validate(
        headers={"Authorization": f"Bearer {token}"},
        checks=[not_a_server_error, response_schema_conformance, negative_data_rejection],
    )
