"""Schema-based fuzzing: schemathesis generates requests from the app's own OpenAPI document
(valid and invalid bodies, paths, queries) and sends them in-process against a fresh populated
database, as each of three roles: a platform admin (everything), a school admin (one school)
and a guardian (their own children). No input may produce a 5xx, every documented response must
match its schema, and invalid input must be rejected.

Each role fuzzes the operations its role gate lets through (tests/cloud/test_auth_matrix.py's
EXPECTED): for the others the gate answers 403 before anything is read or validated, which the
role matrix already checks for every route and role. MAX_EXAMPLES keeps the whole module at
about a minute and a half on two busy cores (measured: docs/api.md, "Tests")."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import schemathesis
from api_world import World, build, login_all
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    negative_data_rejection,
    response_schema_conformance,
)
from test_auth_matrix import EXPECTED, PUBLIC

from cloud.api.app import create_app
from cloud.settings import Settings

# Random examples per operation in the fuzzing phase (the coverage phase adds its own ~50).
MAX_EXAMPLES = {"platform_admin": 10, "school_admin": 5, "guardian": 5}
PG_ADMIN_URL = os.environ.get("QADAM_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
CHECKS = [not_a_server_error, response_schema_conformance, negative_data_rejection]


# The schema is read once per role from an app object; each generated test points that app at
# its own fresh database (get_app_settings reads app.state.settings per request).
APP = create_app(Settings(database_url="postgresql://unused@127.0.0.1:1/none", auth_required=True))
# The platform admin gets schemathesis's full coverage phase: boundary values of every parameter,
# valid and invalid, and unexpected HTTP methods. An invalid value is refused by validation
# before any scope code runs, the same for every role the gate lets through, so the scoped roles
# get the valid boundary values only (their own code paths: scope queries, own children) plus
# the random fuzzing phase (valid and invalid). This keeps the module near 1.5 minutes.
FULL = None  # schemathesis's defaults
VALID_BOUNDARIES = SchemathesisConfig.from_dict(
    {"phases": {"coverage": {"generation": {"mode": "positive"}, "unexpected-methods": []}}}
)


@pytest.fixture(scope="module")
def fuzz_db(db_template: str) -> Iterator[tuple[str, World]]:
    """One populated database for the whole module (a fresh one per test would cost more than
    the fuzzing itself); dropped at the end."""
    name = f"qadam_f_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{db_template}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url, build(url)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def tokens(fuzz_db: tuple[str, World]) -> dict[str, str]:
    """A bearer token per role (sessions written straight into the database: no logout is
    fuzzed, so they stay valid for the whole module)."""
    url, w = fuzz_db
    APP.state.settings = Settings(database_url=url, auth_required=True)
    with TestClient(APP) as c:
        login_all(c, w, url)
        for role, token in w.tokens.items():
            me = c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200 and me.json()["role"] == role, me.text
    return w.tokens


# the platforms' read API takes machine clients' tokens, never a user's (D29-I): fuzzed below
# with a client's own token
MACHINE = "/api/v1/platform/"


def _gate_lets_through(role: str) -> Callable[[Any], bool]:
    def check(ctx: Any) -> bool:
        if ctx.operation.path.startswith(MACHINE):
            return False
        allowed = EXPECTED[(ctx.operation.method.upper(), ctx.operation.path)]
        return allowed == PUBLIC or role in allowed

    check.__name__ = f"allowed_for_{role}"
    return check


def _fuzz_as(role: str, config: SchemathesisConfig | None) -> Any:
    """One schemathesis test (a test item per operation the role may call), as ``role``."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=config)
    operations = schema.exclude(path="/api/v1/auth/logout").include(_gate_lets_through(role))

    @operations.parametrize()
    @settings(
        max_examples=MAX_EXAMPLES[role],
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
    )
    def test(case: Any, tokens: dict[str, str]) -> None:
        auth = {"Authorization": f"Bearer {tokens[role]}"}
        r = case.call_and_validate(headers=auth, checks=CHECKS)
        # a 401 would mean the request never got past authentication, as no role at all
        if EXPECTED[(case.operation.method.upper(), case.operation.path)] != PUBLIC:
            assert r.status_code != 401, r.text

    return test


test_no_server_errors_as_platform_admin = _fuzz_as("platform_admin", FULL)
test_no_server_errors_as_school_admin = _fuzz_as("school_admin", VALID_BOUNDARIES)
test_no_server_errors_as_guardian = _fuzz_as("guardian", VALID_BOUNDARIES)


@pytest.fixture(scope="module")
def platform_token(fuzz_db: tuple[str, World]) -> str:
    """A machine client of the platforms' read API for every school, and its bearer token."""
    from cloud.integrations.platform import clients

    url, _ = fuzz_db
    with psycopg.connect(url) as conn:
        schools = [r[0] for r in conn.execute("SELECT id FROM schools").fetchall()]
        client_id, secret = clients.create(conn, "fuzz platform", schools, clients.SCOPES)
        client = clients.authenticate(conn, client_id, secret)
        assert client is not None
        token, _ = clients.issue_token(conn, client, None, 3600)
    return token


def _fuzz_machine() -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=FULL)

    @schema.include(path_regex="^" + MACHINE).parametrize()
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=True)  # fmt: skip
    def test(case: Any, tokens: dict[str, str], platform_token: str) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {platform_token}"},
                               checks=[not_a_server_error])  # fmt: skip

    return test


# every input to the platforms' read API, with a valid client token: never a server error
test_no_server_errors_as_a_platform_client = _fuzz_machine()
