"""The Webhooks page in process (D29-I): who may open and change it, and another school's
subscriber out of reach (404, nothing changes). Chromium: test_webhook_browser.py."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from api_world import PASSWORD, World
from console_helpers import SAME_ORIGIN, sign_in
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.settings import Settings


@pytest.fixture
def console(database_url: str, world: World) -> Iterator[TestClient]:
    s = Settings(database_url=database_url, auth_required=True)
    with TestClient(create_app(s), base_url="https://testserver",
                    headers={"Accept-Language": "en"}) as c:  # fmt: skip
        yield c


def _hook(database_url: str, school: str) -> int:
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO webhook_hosts (school_id, host) VALUES (%s, 'hooks.example.kz')",
                     (school,))  # fmt: skip
        row = conn.execute(
            "INSERT INTO webhook_subscriptions (school_id, url, events, secret) VALUES"
            " (%s, 'https://hooks.example.kz/x', '{meal}', repeat('s', 40)) RETURNING id",
            (school,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _count(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM webhook_subscriptions").fetchone()
    assert row is not None
    return int(row[0])


def test_roles_and_scope_on_the_page(console: TestClient, database_url: str) -> None:
    theirs = _hook(database_url, "s3")
    sign_in(console, "tech1@qadam.kz", PASSWORD)
    assert console.get("/webhooks").status_code == 403  # a technician: not theirs
    sign_in(console, "admin1@qadam.kz", PASSWORD)
    r = console.get("/webhooks")
    assert r.status_code == 200 and "No host is allowed yet" in r.text
    r = console.post("/webhooks/hosts", data={"school": "s1", "hosts": "evil.kz"},
                     headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 403  # hosts are kept above the school
    for action in ("rotate", "delete"):
        r = console.post(f"/webhooks/{theirs}/{action}", headers=SAME_ORIGIN)
        assert r.status_code == 404, action
    assert console.get("/webhooks?school=s3").status_code == 404
    r = console.post("/webhooks", data={"school": "s1", "url": "https://hooks.example.kz/a",
                                        "events": ["meal"]})  # fmt: skip
    assert r.status_code == 403  # no same-origin headers: a cross-site form
    assert _count(database_url) == 1
    r = console.post("/webhooks", data={"school": "s1", "url": "https://hooks.example.kz/a",
                                        "events": ["meal"]}, headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 200 and "is not on the school" in r.text  # s1 allows no host yet
    assert _count(database_url) == 1
    with psycopg.connect(database_url) as conn:
        secret = conn.execute("SELECT secret FROM webhook_subscriptions").fetchone()
    assert secret is not None and secret[0] not in console.get("/webhooks?school=s1").text
