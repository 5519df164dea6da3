"""Login throttling (issue #13 item 4, D24-D): failed logins are counted per account and per
client address in PostgreSQL, refused with 429 and Retry-After (the right password too) until the
window ends, audited in login_attempts, and a right password resets the account's count.

Time is the throttle's injected clock, moved by the tests: nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_world import PASSWORD, World, build
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.api.deps import get_login_throttle
from cloud.auth.throttle import LoginThrottle
from cloud.settings import Settings

ADMIN = "admin1@qadam.kz"
COOK = "cook1@qadam.kz"
HERE = ("198.51.100.7", 40000)
THERE = ("203.0.113.9", 40000)


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _app(database_url: str, clock: Clock) -> FastAPI:
    app = create_app(Settings(database_url=database_url, auth_required=True))
    throttle = LoginThrottle(clock=clock)
    app.dependency_overrides[get_login_throttle] = lambda: throttle
    return app


@pytest.fixture
def app(database_url: str, clock: Clock) -> FastAPI:
    build(database_url)
    return _app(database_url, clock)


@pytest.fixture
def here(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, client=HERE) as c:
        yield c


@pytest.fixture
def there(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, client=THERE) as c:
        yield c


def _login(c: TestClient, email: str, password: str) -> Any:
    return c.post("/api/v1/auth/token", data={"username": email, "password": password})


def _rows(url: str, q: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(q).fetchall()


def test_forty_wrong_passwords_then_the_right_one_is_refused_with_retry_after(
    here: TestClient, database_url: str
) -> None:
    codes = [_login(here, ADMIN, f"wrong {i}").status_code for i in range(40)]
    assert codes == [401] * 5 + [429] * 35
    r = _login(here, ADMIN, PASSWORD)
    assert r.status_code == 429, r.text
    assert r.headers["retry-after"] == "60"  # the clock has not moved: the minute window
    assert r.json()["detail"] == "too many failed logins: try again in 60 s"
    assert "access_token" not in r.json()
    assert _rows(database_url, "SELECT count(*) FROM sessions") == [(0,)]
    # audited: 5 failed, 36 refused (the right password included), with the account and address
    got = _rows(
        database_url,
        "SELECT outcome, email, client, user_id IS NOT NULL, min(retry_after_s), count(*)"
        " FROM login_attempts GROUP BY 1, 2, 3, 4 ORDER BY 1",
    )
    assert got == [
        ("failed", ADMIN, HERE[0], True, None, 5),
        ("refused", ADMIN, HERE[0], True, 60, 36),
    ]
    # the counters hold no e-mail and no address
    keys = _rows(database_url, "SELECT key FROM login_throttle")
    assert keys and all(len(k[0]) == 32 for k in keys)
    dump = str(_rows(database_url, "SELECT * FROM login_throttle"))
    assert ADMIN not in dump and HERE[0] not in dump


def test_the_client_is_limited_for_other_accounts_and_the_account_from_other_clients(
    here: TestClient, there: TestClient
) -> None:
    for i in range(40):
        _login(here, ADMIN, f"wrong {i}")
    # the same address, another account with its right password: the address is limited
    r = _login(here, COOK, PASSWORD)
    assert r.status_code == 429 and int(r.headers["retry-after"]) == 60, r.text
    # another address: the other account logs in, the guessed account is still locked
    assert _login(there, COOK, PASSWORD).status_code == 200
    r = _login(there, ADMIN, PASSWORD)
    assert r.status_code == 429 and int(r.headers["retry-after"]) == 60, r.text


def test_spraying_many_accounts_from_one_address_is_limited(here: TestClient) -> None:
    """One wrong password for each of many accounts (none reaches its own limit)."""
    codes = [_login(here, f"user{i}@qadam.kz", "wrong").status_code for i in range(20)]
    assert codes == [401] * 20
    r = _login(here, COOK, PASSWORD)
    assert r.status_code == 429 and r.headers["retry-after"] == "60", r.text


def test_after_the_window_the_right_password_works(
    here: TestClient, clock: Clock, database_url: str
) -> None:
    for i in range(6):
        _login(here, ADMIN, f"wrong {i}")
    clock.now += 30
    r = _login(here, ADMIN, PASSWORD)
    assert r.status_code == 429 and r.headers["retry-after"] == "30", r.text
    clock.now += 31
    assert _login(here, ADMIN, PASSWORD).status_code == 200
    assert _rows(database_url, "SELECT count(*) FROM sessions") == [(1,)]


def test_a_right_password_resets_the_accounts_failures(here: TestClient, clock: Clock) -> None:
    for i in range(5):
        assert _login(here, ADMIN, f"wrong {i}").status_code == 401
    clock.now += 61
    for i in range(4):  # 9 failures within 15 minutes: one short of that window's 10
        assert _login(here, ADMIN, f"again {i}").status_code == 401
    assert _login(here, ADMIN, PASSWORD).status_code == 200  # resets the account's count
    # without the reset the 15-minute window would refuse the second of these
    codes = [_login(here, ADMIN, f"later {i}").status_code for i in range(5)]
    assert codes == [401] * 5


def test_the_lockout_grows_with_the_failures(here: TestClient, clock: Clock) -> None:
    start = clock.now
    for _ in range(2):
        for i in range(5):
            assert _login(here, ADMIN, f"wrong {i}").status_code == 401
        clock.now += 61
    # 10 failures within 15 minutes: locked until 15 minutes after the first
    r = _login(here, ADMIN, PASSWORD)
    assert r.status_code == 429, r.text
    assert int(r.headers["retry-after"]) == int(start + 900 - clock.now)
    clock.now = start + 901
    assert _login(here, ADMIN, PASSWORD).status_code == 200


def test_every_api_process_shares_the_counters(
    database_url: str, clock: Clock, here: TestClient
) -> None:
    """Two app instances (two API processes) on one database: failures seen by one refuse
    logins at the other."""
    for i in range(5):
        assert _login(here, ADMIN, f"wrong {i}").status_code == 401
    with TestClient(_app(database_url, clock), client=THERE) as other:
        r = _login(other, ADMIN, PASSWORD)
    assert r.status_code == 429 and r.headers["retry-after"] == "60", r.text


def test_the_login_throttle_is_on_by_default(database_url: str, world_url: World) -> None:
    """The app's own throttle (real clock), not the tests' override."""
    app = create_app(Settings(database_url=database_url, auth_required=True))
    with TestClient(app, client=HERE) as c:
        codes = [_login(c, ADMIN, f"wrong {i}").status_code for i in range(6)]
        assert codes == [401] * 5 + [429]
        r = _login(c, ADMIN, PASSWORD)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60, r.text


@pytest.fixture
def world_url(database_url: str) -> World:
    return build(database_url)
