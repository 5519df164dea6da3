"""`qadam create-user`: the first platform admin from the command line, on the real database."""

from __future__ import annotations

import subprocess
import sys

import psycopg
from fastapi.testclient import TestClient

from cloud.api.app import create_app
from cloud.settings import Settings

PASSWORD = "a long enough secret"


def _run(url: str, *args: str, stdin: str = PASSWORD + "\n") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "create-user", *args, "--database-url", url],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _users(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT email, role FROM users ORDER BY id")]


def test_first_admin_can_log_in_and_the_creation_is_audited(database_url: str) -> None:
    r = _run(database_url, "Root@Example.kz")
    assert r.returncode == 0, r.stderr
    assert "created user" in r.stdout and "root@example.kz (platform_admin)" in r.stdout
    assert _users(database_url) == [("root@example.kz", "platform_admin")]
    with TestClient(create_app(Settings(database_url=database_url, auth_required=True))) as c:
        tok = c.post("/api/v1/auth/token", data={"username": "root@example.kz",
                                                 "password": PASSWORD})  # fmt: skip
        assert tok.status_code == 200, tok.text
        me = c.get(
            "/api/v1/auth/me", headers={"Authorization": "Bearer " + tok.json()["access_token"]}
        )
        assert me.json()["role"] == "platform_admin"
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT actor, action, entity FROM audit_log").fetchone()
    assert row == ("cli:create-user", "create", "user")


def test_bad_requests_are_refused_and_change_nothing(database_url: str) -> None:
    assert _run(database_url, "root@example.kz").returncode == 0
    cases = [
        (("root@example.kz",), PASSWORD + "\n", "exists"),
        (("x@example.kz",), "short\n", "at least 10 characters"),
        (("x@example.kz", "--role", "school_admin"), PASSWORD + "\n", "needs --school"),
        (("x@example.kz", "--role", "school_admin", "--school", "nope"), PASSWORD + "\n",
         "no such school"),
        (("not-an-email",), PASSWORD + "\n", "e-mail address"),
    ]  # fmt: skip
    for args, stdin, message in cases:
        r = _run(database_url, *args, stdin=stdin)
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
    r = _run(database_url, "x@example.kz", "--role", "janitor")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    assert _users(database_url) == [("root@example.kz", "platform_admin")]
