"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): the platform sends the person
to ``end_session_endpoint`` with the ID token and an exactly registered return address."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from oidc_helpers import Platform, code_for, exchange, query_of, register, sign_in


def _id_token(client: TestClient, p: Platform) -> str:
    code, verifier = code_for(client, p)
    token: str = exchange(client, p, code, verifier).json()["id_token"]
    return token


def _signed_in(client: TestClient) -> bool:
    return client.get("/app/en/").status_code == 200


def test_logout_with_the_id_token_ends_the_session_and_returns(
    client: TestClient, platform: Platform
) -> None:
    id_token = _id_token(client, platform)
    assert _signed_in(client)
    r = client.get("/oidc/logout", params={"id_token_hint": id_token, "state": "bye",
                   "post_logout_redirect_uri": platform.logout_uri})  # fmt: skip
    assert r.status_code == 303
    assert r.headers["location"].startswith(f"{platform.logout_uri}?")
    assert query_of(r.headers["location"]) == {"state": "bye"}
    assert not _signed_in(client)


def test_a_return_address_not_registered_exactly_is_refused(
    client: TestClient, platform: Platform
) -> None:
    id_token = _id_token(client, platform)
    for uri in (
        "https://books.example/signed-out/",
        "https://evil.example/signed-out",
        "https://books.example/callback",
    ):  # a redirect URI is no sign-out address
        r = client.get("/oidc/logout", params={"id_token_hint": id_token,
                       "post_logout_redirect_uri": uri})  # fmt: skip
        assert r.status_code == 400 and "location" not in r.headers, uri
    assert _signed_in(client)  # nothing happened


def test_a_forged_hint_is_refused_and_no_hint_asks_first(
    client: TestClient, platform: Platform, database_url: str, world: Any
) -> None:
    id_token = _id_token(client, platform)
    head, payload, sig = id_token.split(".")
    r = client.get("/oidc/logout", params={"id_token_hint": f"{head}.{payload}.{sig[::-1]}"})
    assert r.status_code == 400 and _signed_in(client)
    # without a hint (a link on any site) the person confirms
    r = client.get("/oidc/logout", params={"client_id": platform.client_id,
                   "post_logout_redirect_uri": platform.logout_uri})  # fmt: skip
    assert r.status_code == 200 and 'id="confirm-logout"' in r.text and _signed_in(client)
    r = client.post("/oidc/logout", data={"client_id": platform.client_id,
                    "post_logout_redirect_uri": platform.logout_uri})  # fmt: skip
    assert r.status_code == 303 and r.headers["location"] == platform.logout_uri
    assert not _signed_in(client)


def test_another_users_hint_does_not_sign_this_one_out(
    client: TestClient, platform: Platform, database_url: str
) -> None:
    alices = _id_token(client, platform)
    client.cookies.clear()
    sign_in(client, "mum@qadam.kz")
    r = client.get("/oidc/logout", params={"id_token_hint": alices})
    assert r.status_code == 200 and 'id="confirm-logout"' in r.text
    assert _signed_in(client)
    other = register(database_url, "X", ["https://x.example/cb"], ["openid"])
    r = client.get("/oidc/logout", params={"id_token_hint": alices, "client_id": other.client_id})
    assert r.status_code == 400  # the hint names another platform
