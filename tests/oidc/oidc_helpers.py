"""Helpers of the provider's tests: registering a platform straight in the database (the
console's page is tested on its own), PKCE pairs, and the browser side of a sign-in driven
through the in-process client."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg
from api_world import PASSWORD
from fastapi.testclient import TestClient

from cloud.auth.principal import Principal
from cloud.oidc import clients


@dataclass(frozen=True)
class Platform:
    client_id: str
    secret: str
    redirect_uri: str
    logout_uri: str | None


def register(url: str, name: str, redirect_uris: list[str], scopes: list[str],
             logout_uris: list[str] | None = None) -> Platform:  # fmt: skip
    admin = Principal(user_id=None, email="tests", role="platform_admin")
    with psycopg.connect(url) as conn:
        made = clients.register(conn, admin, name, redirect_uris, logout_uris or [], scopes)
    return Platform(made.client_id, made.secret, redirect_uris[0],
                    (logout_uris or [None])[0])  # fmt: skip


def pkce() -> tuple[str, str]:
    """(verifier, S256 challenge)"""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorize_url(p: Platform, challenge: str | None, scope: str = "openid role school class",
                  **extra: str) -> str:  # fmt: skip
    q = {"response_type": "code", "client_id": p.client_id, "redirect_uri": p.redirect_uri,
         "scope": scope, "state": "st-1", "nonce": secrets.token_urlsafe(8)}  # fmt: skip
    if challenge is not None:
        q.update(code_challenge=challenge, code_challenge_method="S256")
    q.update(extra)
    return "/oidc/authorize?" + urlencode(q)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def sign_in(client: TestClient, email: str) -> None:
    r = client.post("/oidc/login", data={"email": email, "password": PASSWORD,
                                         "next": "/oidc/authorize?x=1"})  # fmt: skip
    assert r.status_code == 303, r.text


def code_for(client: TestClient, p: Platform, email: str = "alice@s1.pupil",
             scope: str = "openid role school class") -> tuple[str, str]:  # fmt: skip
    """Sign in (if not yet), consent, and return (code, verifier)."""
    verifier, challenge = pkce()
    url = authorize_url(p, challenge, scope)
    r = client.get(url)
    if r.status_code == 303 and "/oidc/login" in r.headers["location"]:
        sign_in(client, email)
        r = client.get(url)
    if r.status_code == 200:  # the consent screen
        r = client.post(url, data={"decision": "allow"})
    assert r.status_code == 302, r.text
    got = query_of(r.headers["location"])
    assert r.headers["location"].startswith(p.redirect_uri + "?"), r.headers["location"]
    assert got["state"] == "st-1"
    return got["code"], verifier


def token(client: TestClient, p: Platform, **form: str) -> Any:
    return client.post("/oidc/token", data=form, auth=(p.client_id, p.secret))


def exchange(client: TestClient, p: Platform, code: str, verifier: str | None) -> Any:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": p.redirect_uri}
    if verifier is not None:
        form["code_verifier"] = verifier
    return token(client, p, **form)
