"""Registering a learning platform in the console (D29-F): platform admins only; the secret
is shown once and only its digest kept; exact redirect URIs; audited; switched off."""

from __future__ import annotations

import hashlib
import re

import psycopg
from api_world import PASSWORD
from fastapi.testclient import TestClient

FORM = {"name": "Oqulyq", "redirect_uris": "https://books.example/cb\n\nhttps://books.example/cb2",
        "logout_uris": "https://books.example/bye", "scopes": ["role", "class"]}  # fmt: skip


def _console(client: TestClient, email: str) -> None:
    r = client.post("/login", data={"email": email, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303, r.text


def test_only_platform_admins_register(client: TestClient, database_url: str) -> None:
    for email in ("admin1@qadam.kz", "d1@qadam.kz", "tech1@qadam.kz", "cook1@qadam.kz"):
        client.cookies.clear()
        _console(client, email)
        page = client.get("/sso")  # a school admin's: their school's Learning tab only
        assert page.status_code == (200 if email == "admin1@qadam.kz" else 403), email
        assert 'id="register-client"' not in page.text
        assert client.post("/sso", data=FORM).status_code == 403, email
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM oidc_clients").fetchone() == (0,)


def test_register_shows_the_secret_once_and_keeps_its_digest(
    client: TestClient, database_url: str
) -> None:
    _console(client, "root@qadam.kz")
    page = client.get("/sso")
    assert page.status_code == 200 and 'href="/sso"' in page.text  # in the menu
    r = client.post("/sso", data=FORM)
    assert r.status_code == 200, r.text
    client_id = re.search(r'id="made-client-id">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    secret = re.search(r'id="made-secret">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT secret_hash, redirect_uris, post_logout_redirect_uris, scopes"
            " FROM oidc_clients WHERE client_id = %s",
            (client_id,),
        ).fetchone()
        audit = conn.execute(
            "SELECT action, actor, after->>'name' FROM audit_log WHERE entity = 'oidc_clients'"
        ).fetchall()
    assert row is not None
    assert bytes(row[0]) == hashlib.sha256(secret.encode()).digest()
    assert row[1] == ["https://books.example/cb", "https://books.example/cb2"]
    assert row[2] == ["https://books.example/bye"] and row[3] == ["openid", "role", "class"]
    assert audit == [("create", "root@qadam.kz", "Oqulyq")]
    listing = client.get("/sso").text
    assert client_id in listing and secret not in listing  # never shown again


def test_bad_registrations_change_nothing(client: TestClient, database_url: str) -> None:
    _console(client, "root@qadam.kz")
    bad = [{**FORM, "redirect_uris": "http://books.example/cb"},  # not https
           {**FORM, "redirect_uris": "https://books.example/cb#frag"},
           {**FORM, "redirect_uris": ""},
           {**FORM, "logout_uris": "javascript:alert(1)"},
           {**FORM, "name": "  "},
           {**FORM, "scopes": ["email"]}]  # fmt: skip
    for form in bad:
        r = client.post("/sso", data=form)
        assert r.status_code == 200 and 'role="alert"' in r.text, form
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM oidc_clients").fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM audit_log WHERE entity = 'oidc_clients'"
        ).fetchone() == (0,)


def test_switch_off_is_audited(client: TestClient, database_url: str) -> None:
    _console(client, "root@qadam.kz")
    r = client.post("/sso", data=FORM)
    client_id = re.search(r'id="made-client-id">([^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    r = client.post(f"/sso/{client_id}/disable")
    assert r.status_code == 303
    assert client.post(f"/sso/{client_id}/disable").status_code == 404  # already off
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "SELECT disabled_at IS NOT NULL FROM oidc_clients WHERE client_id = %s", (client_id,)
        ).fetchone() == (True,)
        assert conn.execute(
            "SELECT action FROM audit_log WHERE entity = 'oidc_clients' ORDER BY id"
        ).fetchall() == [("create",), ("revoke",)]
