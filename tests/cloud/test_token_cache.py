"""The token-lookup cache (cloud/auth/token_cache.py, issue #19): reads are served from it, and
a logout, a revocation or a user change made anywhere (another API process, a tool, SQL) stops
the token working in every process, through the database's NOTIFY (migration 0025)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import psycopg
import pytest
from api_world import World, build, login_all
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.auth import token_cache
from cloud.auth.principal import Principal
from cloud.settings import Settings

ME = "/api/v1/auth/me"
GENEROUS_S = 30


@pytest.fixture
def world(database_url: str) -> World:
    w = build(database_url)
    login_all(None, w, database_url)  # type: ignore[arg-type]  # sessions written directly
    return w


@pytest.fixture
def two_processes(database_url: str) -> Iterator[tuple[TestClient, TestClient]]:
    """Two API apps on one database, as two processes of `qadam serve` are."""
    # kept far longer than the test waits: only a notice can end it in time
    s = Settings(database_url=database_url, auth_required=True, api_rate_account="",
                 api_rate_client="", auth_cache_ttl_s=3600)  # fmt: skip
    with ExitStack() as stack:
        clients = [stack.enter_context(TestClient(create_app(s))) for _ in range(2)]
        for c in clients:
            _wait_listening(c)
        yield clients[0], clients[1]


def _wait_listening(client: TestClient) -> None:
    cache = client.app.state.token_cache  # type: ignore[attr-defined]
    deadline = time.monotonic() + GENEROUS_S
    while not cache.live:
        assert time.monotonic() < deadline, "the cache's listener did not connect"
        time.sleep(0.02)


def _eventually(check: Callable[[], bool]) -> None:
    """Until ``check`` holds (a notice crosses the database asynchronously); no timing asserted."""
    deadline = time.monotonic() + GENEROUS_S
    while not check():
        assert time.monotonic() < deadline, "the change did not reach the other process"
        time.sleep(0.05)


def _hits() -> float:
    return token_cache.HITS._value.get()  # type: ignore[attr-defined, no-any-return]


def test_reads_are_served_from_the_cache(two_processes: tuple[TestClient, TestClient],
                                         world: World) -> None:  # fmt: skip
    a, _ = two_processes
    auth = world.auth("guardian")
    assert a.get(ME, headers=auth).status_code == 200
    before = _hits()
    for _ in range(3):
        r = a.get(ME, headers=auth)
        assert r.status_code == 200 and r.json()["role"] == "guardian"
    assert _hits() - before == 3


def test_a_logout_in_one_process_ends_the_token_in_the_other(
    two_processes: tuple[TestClient, TestClient], world: World
) -> None:
    a, b = two_processes
    auth = world.auth("guardian")
    assert b.get(ME, headers=auth).status_code == 200  # b keeps it
    assert a.post("/api/v1/auth/logout", headers=auth).status_code == 204
    assert a.get(ME, headers=auth).status_code == 401  # in its own process at once
    _eventually(lambda: b.get(ME, headers=auth).status_code == 401)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE users SET active = false WHERE id = %(user)s",
        "UPDATE users SET role = 'guardian', school_id = NULL WHERE id = %(user)s",
        "UPDATE sessions SET revoked_at = now() WHERE user_id = %(user)s",
        "DELETE FROM sessions WHERE user_id = %(user)s",
    ],
)
def test_a_change_made_in_the_database_reaches_the_cache(
    two_processes: tuple[TestClient, TestClient], world: World, database_url: str, change: str
) -> None:
    a, _ = two_processes
    auth = world.auth("school_admin")
    assert a.get(ME, headers=auth).json()["role"] == "school_admin"
    with psycopg.connect(database_url) as conn:
        conn.execute(change, {"user": world.users["school_admin"]})

    def changed() -> bool:
        r = a.get(ME, headers=auth)
        return r.status_code == 401 or r.json()["role"] != "school_admin"

    _eventually(changed)


def test_without_a_listener_the_cache_is_bypassed(database_url: str, world: World) -> None:
    """No lifespan (so no listener): every lookup reads the database, so a change made where no
    notice can reach it still counts at once."""
    s = Settings(database_url=database_url, auth_required=True, auth_cache_ttl_s=3600)
    client = TestClient(create_app(s))  # not entered: the app's start-up does not run
    auth = world.auth("guardian")
    assert client.get(ME, headers=auth).status_code == 200
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE users SET active = false WHERE id = %s", (world.users["guardian"],))
    assert client.get(ME, headers=auth).status_code == 401
    client.app.state.connections.close()  # type: ignore[attr-defined]


def test_a_lookup_that_raced_a_change_is_not_kept() -> None:
    cache = token_cache.TokenCache(ttl_s=30)
    cache.live = True
    p = Principal(user_id=1, email="a@b.c", role="guardian")
    generation = cache._generation
    cache.drop_user(1)  # a notice arrives between the read and the store
    cache._store(b"k" * 32, p, 30, generation)
    assert len(cache) == 0
    cache._store(b"k" * 32, p, 30, cache._generation)
    assert len(cache) == 1
    cache.notice("u:1")
    assert len(cache) == 0
    cache._store(b"k" * 32, p, 30, cache._generation)
    cache.notice("s:" + (b"k" * 32).hex())
    assert len(cache) == 0
    cache._store(b"k" * 32, p, 30, cache._generation)
    cache.notice("garbage")  # not understood: everything goes
    assert len(cache) == 0
