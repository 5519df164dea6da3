"""The API under overload (issue #19): an exhausted connection pool and a full admission queue
answer 503 with Retry-After (not a 500, not a hang) and recover by themselves; the per-client and
per-account rate limits answer 429 with Retry-After.

The slow requests are real ones: GET /api/v1/schools held up by a lock another connection keeps
on the schools table, so each holds its pooled connection (and its admission slot) until the
test lets go. The API runs under uvicorn in a thread, as `qadam serve` runs it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from api_world import World, build, login_all

from cloud.api.app import create_app
from cloud.settings import Settings

SCHOOLS = "/api/v1/schools"
ME = "/api/v1/auth/me"
GENEROUS_S = 30  # only a hang would take this long


@pytest.fixture
def world(database_url: str) -> World:
    w = build(database_url)
    login_all(None, w, database_url)  # type: ignore[arg-type]  # sessions written directly
    return w


@contextmanager
def serve(settings: Settings) -> Iterator[httpx.Client]:
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
    )
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    deadline = time.monotonic() + GENEROUS_S
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=GENEROUS_S) as client:
            yield client
    finally:
        server.should_exit = True
        t.join(GENEROUS_S)


@contextmanager
def schools_locked(database_url: str) -> Iterator[None]:
    """Every query that reads schools waits until the block ends."""
    with psycopg.connect(database_url) as conn:
        conn.execute("LOCK TABLE schools IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def _wait_blocked(database_url: str, n: int) -> None:
    """Until ``n`` API connections wait on the lock (the slow requests hold their connection)."""
    deadline = time.monotonic() + GENEROUS_S
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'qadam-api' AND wait_event_type = 'Lock'"
            ).fetchone()
            if row is not None and row[0] >= n:
                return
            time.sleep(0.05)
    raise AssertionError(f"{n} requests did not block on the lock")


def _settings(url: str, **over: Any) -> Settings:
    base: dict[str, Any] = {"database_url": url, "auth_required": True,
                            "api_rate_client": "", "api_rate_account": ""}  # fmt: skip
    return Settings(**{**base, **over})


def test_an_exhausted_pool_is_503_with_retry_after_and_recovers(
    database_url: str, world: World
) -> None:
    s = _settings(database_url, db_pool_size=2, db_pool_timeout_s=0.5, api_max_inflight=10,
                  api_retry_after_s=3)  # fmt: skip
    auth = world.auth("platform_admin")
    with serve(s) as client, ThreadPoolExecutor(4) as pool:
        assert client.get(SCHOOLS, headers=auth).status_code == 200  # the pool is open
        slow: list[Future[httpx.Response]] = []
        with schools_locked(database_url):
            slow = [pool.submit(client.get, SCHOOLS, headers=auth) for _ in range(2)]
            _wait_blocked(database_url, 2)  # both pooled connections are held
            refused = client.get(ME, headers=auth)
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "3"
            assert "busy" in refused.json()["detail"]
            assert all(not f.done() for f in slow)
        # the lock is gone: the held requests finish and new ones are served again
        assert [f.result(GENEROUS_S).status_code for f in slow] == [200, 200]
        assert client.get(ME, headers=auth).status_code == 200
        assert client.get(SCHOOLS, headers=auth).status_code == 200


def test_a_full_admission_queue_is_503_with_retry_after_and_recovers(
    database_url: str, world: World
) -> None:
    s = _settings(database_url, db_pool_size=4, api_max_inflight=1, api_queue_max=1,
                  api_queue_wait_s=0.3, api_retry_after_s=2)  # fmt: skip
    auth = world.auth("platform_admin")
    with serve(s) as client, ThreadPoolExecutor(4) as pool:
        with schools_locked(database_url):
            held = pool.submit(client.get, SCHOOLS, headers=auth)
            _wait_blocked(database_url, 1)  # the one slot is taken
            timed_out = client.get(ME, headers=auth)  # queued, then refused when its wait ends
            assert timed_out.status_code == 503, timed_out.text
            assert timed_out.headers["Retry-After"] == "2"
            assert not held.done()
        assert held.result(GENEROUS_S).status_code == 200
        assert client.get(ME, headers=auth).status_code == 200


def test_a_queued_request_is_served_when_a_slot_frees(database_url: str, world: World) -> None:
    s = _settings(database_url, db_pool_size=4, api_max_inflight=1, api_queue_wait_s=20)
    auth = world.auth("platform_admin")
    with serve(s) as client, ThreadPoolExecutor(4) as pool:
        with schools_locked(database_url):
            held = pool.submit(client.get, SCHOOLS, headers=auth)
            _wait_blocked(database_url, 1)
            queued = pool.submit(client.get, ME, headers=auth)
            time.sleep(0.2)  # not a timing assert: gives the request time to reach the queue
            assert not queued.done()
        assert held.result(GENEROUS_S).status_code == 200
        assert queued.result(GENEROUS_S).status_code == 200


def test_a_client_over_its_rate_limit_gets_429_with_retry_after(
    database_url: str, world: World
) -> None:
    s = _settings(database_url, api_rate_client="3/minute")
    with serve(s) as client:
        codes = [client.get(ME, headers=world.auth("platform_admin")).status_code
                 for _ in range(3)]  # fmt: skip
        assert codes == [200, 200, 200]
        r = client.get(ME, headers=world.auth("guardian"))  # same address, another account
        assert r.status_code == 429
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert client.get("/healthz").status_code == 200  # not limited


def test_an_account_over_its_rate_limit_gets_429_and_others_are_served(
    database_url: str, world: World
) -> None:
    s = _settings(database_url, api_rate_account="3/minute")
    with serve(s) as client:
        admin = world.auth("platform_admin")
        assert [client.get(ME, headers=admin).status_code for _ in range(3)] == [200] * 3
        r = client.get(ME, headers=admin)
        assert r.status_code == 429, r.text
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert client.get(ME, headers=world.auth("guardian")).status_code == 200


def test_bad_rate_limit_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="api_rate_account"):
        Settings(api_rate_account="lots/second")


@pytest.mark.parametrize("pool_size", [0, 2])
def test_an_unreachable_database_is_503_with_retry_after(pool_size: int) -> None:
    """Nothing listens on the database's port: with the pool (its wait ends) and without (the
    connect is refused), the answer is a busy 503 with Retry-After, not a 500 or a hang."""
    s = _settings("postgresql://postgres@127.0.0.1:9/none", db_pool_size=pool_size,
                  db_pool_timeout_s=0.5, auth_cache_ttl_s=0, api_retry_after_s=4)  # fmt: skip
    with serve(s) as client:
        r = client.get(ME, headers={"Authorization": "Bearer not-checked"})
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "4"
        assert "busy" in r.json()["detail"]
